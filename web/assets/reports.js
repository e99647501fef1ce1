// Reports: the summary, the daily figures as SVG charts and the per-agent table, from
// GET /api/v1/reports/summary and /daily. The range, team and business-hours choice live in the
// page's address (`/reports?from=...&to=...&team_id=...`), so a report can be shared or kept.
import { api, apiBlob, bootAuth, fmtDuration, h, loadDirectory, toast } from '/assets/api.js';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
const DAY_MS = 86400000;

let me = null;
let dir = { teams: new Map(), agents: new Map() };
let loading = 0;

bootAuth({ onReady: start, onGone: stop });
$('report-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const query = fromForm();
  history.replaceState(null, '', `/reports?${query}`);
  load(query);
});
$('report-csv').addEventListener('click', downloadCsv);

async function start(session) {
  me = session;
  if (me.role === 'agent') {
    showError('Reports are for supervisors and admins.');
    return;
  }
  try {
    dir = await loadDirectory();
  } catch (e) {
    toast(`Directory: ${e.message}`, 'error');
  }
  if (!me) return;
  $('me-name').textContent = dir.agents.get(me.agent_id)?.name || me.role;
  fillTeams();
  toForm(new URLSearchParams(location.search));
  load(fromForm());
}

function stop() {
  me = null;
  loading += 1;
  for (const id of ['report-cards', 'chart-volume', 'chart-first-response', 'chart-queue-wait',
    'report-agents', 'me-name', 'report-zone']) $(id).replaceChildren();
  showError('');
}

// ---- the form and the address -----------------------------------------------------------------

/** The teams this user may report on: a supervisor's own, an admin's every team. */
function fillTeams() {
  const own = me.role === 'supervisor' ? new Set(dir.agents.get(me.agent_id)?.team_ids || []) : null;
  const select = $('report-team');
  select.replaceChildren(h('option', { value: '' }, own ? 'All my teams' : 'All teams'));
  const teams = [...dir.teams.values()]
    .filter((t) => !own || own.has(t.id))
    .sort((a, b) => a.name.localeCompare(b.name));
  for (const team of teams) select.append(h('option', { value: team.id }, team.name));
}

const isoDay = (ms) => new Date(ms).toISOString().slice(0, 10);

function toForm(params) {
  const to = params.get('to') || isoDay(Date.now());
  $('report-to').value = to;
  $('report-from').value = params.get('from') || isoDay(Date.parse(to) - 29 * DAY_MS);
  const team = params.get('team_id') || '';
  $('report-team').value = [...$('report-team').options].some((o) => o.value === team) ? team : '';
  $('report-business').checked = params.get('business_hours') === 'true';
}

function fromForm() {
  const params = new URLSearchParams();
  params.set('from', $('report-from').value);
  params.set('to', $('report-to').value);
  if ($('report-team').value) params.set('team_id', $('report-team').value);
  if ($('report-business').checked) params.set('business_hours', 'true');
  return params.toString();
}

function showError(text) {
  $('report-error').textContent = text;
  $('report-error').hidden = !text;
}

// ---- loading ----------------------------------------------------------------------------------

async function load(query) {
  const mine = ++loading;
  showError('');
  let summary;
  let daily;
  try {
    [summary, daily] = await Promise.all([
      api('GET', `/api/v1/reports/summary?${query}`),
      api('GET', `/api/v1/reports/daily?${query}`),
    ]);
  } catch (e) {
    if (mine === loading) showError(e.message);
    return;
  }
  // A newer request (or a sign-out) wins.
  if (mine !== loading) return;
  $('report-zone').textContent = `${summary.from} to ${summary.to}, days in ${summary.time_zone}`
    + (summary.business_hours ? ', durations in business hours' : '');
  renderCards(summary);
  renderCharts(daily.items);
  renderAgents(summary.per_agent);
}

async function downloadCsv() {
  try {
    const blob = await apiBlob(`/api/v1/reports/daily?${fromForm()}&format=csv`);
    const url = URL.createObjectURL(blob);
    const link = h('a', { href: url, download: `waos-daily-${$('report-from').value}-${$('report-to').value}.csv` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    toast(`CSV: ${e.message}`, 'error');
  }
}

// ---- the summary ------------------------------------------------------------------------------

const secs = (value) => (value == null ? '—' : fmtDuration(value * 1000));

function card(name, value, detail, testid) {
  return h('div', { class: 'card stat-card', testid },
    h('div', { class: 'stat-name' }, name),
    h('div', { class: 'stat-value', testid: `${testid}-value` }, value),
    h('div', { class: 'sub' }, detail || ''));
}

function duration(name, figures, testid) {
  const detail = figures.count
    ? `p90 ${secs(figures.p90_secs)} · avg ${secs(figures.avg_secs)} · ${figures.count} measured`
    : 'none in this range';
  return card(`${name} (median)`, secs(figures.p50_secs), detail, testid);
}

function renderCards(s) {
  const judged = s.sla.met + s.sla.breached;
  const met = judged ? `${Math.round((s.sla.met / judged) * 100)}% met` : '—';
  const offers = s.offers_before_acceptance == null ? '' : `${s.offers_before_acceptance} missed offers before acceptance`;
  $('report-cards').replaceChildren(
    card('Conversations', String(s.conversations), 'new and reopened', 'stat-conversations'),
    card('Resolved', String(s.resolved), '', 'stat-resolved'),
    duration('First response', s.first_response, 'stat-first-response'),
    duration('Resolution', s.resolution, 'stat-resolution'),
    duration('Queue wait', s.queue_wait, 'stat-queue-wait'),
    card('SLA', met, `${s.sla.met} met · ${s.sla.breached} breached${offers ? ` · ${offers}` : ''}`, 'stat-sla'),
  );
}

function renderAgents(lines) {
  const body = $('report-agents');
  body.replaceChildren(...lines.map((line) => h('tr', { testid: 'agent-row' },
    h('td', {}, line.name || dir.agents.get(line.agent_id)?.name || line.agent_id),
    h('td', { class: 'num' }, String(line.resolved)),
    h('td', { class: 'num' }, String(line.first_response.count)),
    h('td', { class: 'num' }, secs(line.first_response.avg_secs)),
    h('td', { class: 'num' }, secs(line.first_response.p50_secs)),
    h('td', { class: 'num' }, secs(line.first_response.p90_secs)))));
  $('report-agents-empty').hidden = lines.length > 0;
}

// ---- charts (SVG built here, nothing fetched) ---------------------------------------------------

const W = 720;
const H = 220;
const PAD = { left: 56, right: 12, top: 14, bottom: 26 };

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  for (const child of children) node.append(child);
  return node;
}

/** A round top for the y axis: 1, 2 or 5 times a power of ten, at least `max`. */
function niceMax(max) {
  if (!(max > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  return [1, 2, 5, 10].map((m) => m * power).find((top) => top >= max);
}

/** The frame: y grid and labels (by `label`), the first, middle and last day under the x axis. */
function frame(days, top, label) {
  const plotH = H - PAD.top - PAD.bottom;
  const parts = [];
  for (const share of [0, 0.5, 1]) {
    const y = PAD.top + plotH * (1 - share);
    parts.push(svg('line', { class: 'grid', x1: PAD.left, x2: W - PAD.right, y1: y, y2: y }));
    parts.push(svg('text', { class: 'axis', x: PAD.left - 6, y: y + 4, 'text-anchor': 'end' }, label(top * share)));
  }
  const marks = [...new Set([0, Math.floor((days.length - 1) / 2), days.length - 1])];
  for (const i of marks) {
    parts.push(svg('text', { class: 'axis', x: xAt(i, days.length), y: H - 8, 'text-anchor': 'middle' }, days[i]));
  }
  return parts;
}

const xAt = (i, n) => PAD.left + ((W - PAD.left - PAD.right) * (i + 0.5)) / n;
const yAt = (value, top) => PAD.top + (H - PAD.top - PAD.bottom) * (1 - value / top);

function chartBox(title, parts) {
  return svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, class: 'chart-svg' },
    svg('title', {}, title), ...parts);
}

function barChart(days, values, title) {
  const top = niceMax(Math.max(0, ...values));
  const slot = (W - PAD.left - PAD.right) / days.length;
  const width = Math.max(1, slot * 0.8);
  const bars = values.map((value, i) => svg('rect', {
    class: 'day-bar', 'data-day': days[i], 'data-value': value,
    x: xAt(i, days.length) - width / 2, y: yAt(value, top), width, height: yAt(0, top) - yAt(value, top),
  }, svg('title', {}, `${days[i]}: ${value}`)));
  return chartBox(title, [...frame(days, top, (v) => String(Number.isInteger(v) ? v : v.toFixed(1))), ...bars]);
}

/** Lines with gaps where a day has no value; a lone day is a dot. */
function lineChart(days, series, title) {
  const all = series.flatMap((s) => s.values).filter((v) => v != null);
  const top = niceMax(Math.max(0, ...all));
  const parts = frame(days, top, (v) => (v ? fmtDuration(v * 1000) : '0'));
  series.forEach((s, k) => {
    let run = [];
    const flush = () => {
      if (run.length > 1) parts.push(svg('polyline', { class: `line s${k}`, points: run.join(' ') }));
      run = [];
    };
    s.values.forEach((value, i) => {
      if (value == null) return flush();
      const point = `${xAt(i, days.length).toFixed(1)},${yAt(value, top).toFixed(1)}`;
      run.push(point);
      parts.push(svg('circle', {
        class: `dot s${k}`, 'data-day': days[i], 'data-value': value,
        cx: xAt(i, days.length), cy: yAt(value, top), r: 3,
      }, svg('title', {}, `${days[i]} ${s.name}: ${fmtDuration(value * 1000)}`)));
      return undefined;
    });
    flush();
    parts.push(svg('text', { class: `legend s${k}`, x: W - PAD.right - 60 * (series.length - k), y: PAD.top }, s.name));
  });
  return chartBox(title, parts);
}

function renderCharts(items) {
  const days = items.map((d) => d.date);
  if (!days.length) return;
  $('chart-volume').replaceChildren(
    barChart(days, items.map((d) => d.conversations), 'Conversations per day'));
  const durations = (key) => [
    { name: 'p50', values: items.map((d) => d[key].p50_secs) },
    { name: 'p90', values: items.map((d) => d[key].p90_secs) },
  ];
  $('chart-first-response').replaceChildren(
    lineChart(days, durations('first_response'), 'First response per day'));
  $('chart-queue-wait').replaceChildren(
    lineChart(days, durations('queue_wait'), 'Queue wait per day'));
}
