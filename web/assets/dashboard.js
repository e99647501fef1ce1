// Queue dashboard: live team and agent stats, the waiting list with manual assignment, audit.
import {
  api, bootAuth, contactName, fmtClock, fmtDuration, fmtTime, h, LiveSocket, loadDirectory,
  shortId, showConnection, toast,
} from '/assets/api.js';

const $ = (id) => document.getElementById(id);
const PRESENCE_ORDER = { online: 0, away: 1, offline: 2 };

let me = null;
let dir = { teams: new Map(), agents: new Map() };
let sock = null;
const teams = new Map();    // team_id -> team stats (+ `at`: when it arrived)
const agents = new Map();   // agent_id -> agent stats
const waiting = new Map();  // conversation_id -> {conversation_id, team_id, since}
const rows = new Map();     // conversation_id -> <tr>, kept so a select's choice survives deltas
let recentTimer = null;
let recentAt = 0;

const teamName = (id) => dir.teams.get(id)?.name || `team ${shortId(id)}`;
const agentName = (id) => agents.get(id)?.name || dir.agents.get(id)?.name || `agent ${shortId(id)}`;

bootAuth({ onReady: start, onGone: stop });
setInterval(tick, 1000);
$('audit-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const id = $('audit-input').value.trim();
  if (id) loadAudit(id);
});

async function start(session) {
  me = session;
  try {
    dir = await loadDirectory();
  } catch (e) {
    toast(`Directory: ${e.message}`, 'error');
  }
  if (!me) return;
  $('me-name').textContent = dir.agents.get(me.agent_id)?.name || me.role;
  sock = new LiveSocket('/ws/supervisor', { onFrame, onState: showConnection });
  sock.start();
  refreshRecent();
}

function stop() {
  if (sock) sock.stop();
  sock = null;
  me = null;
  clearTimeout(recentTimer);
  recentTimer = null;
  for (const map of [teams, agents, waiting, rows]) map.clear();
  for (const id of ['teams', 'agents', 'waiting', 'recent', 'audit', 'audit-head', 'me-name']) $(id).replaceChildren();
}

// ---- frames ------------------------------------------------------------------------------

function onFrame(f) {
  const now = Date.now();
  if (f.type === 'stats') {
    // The snapshot after every (re)connect replaces everything.
    teams.clear();
    agents.clear();
    waiting.clear();
  } else if (f.type === 'error') {
    toast(f.message || f.code, 'error');
    const row = rows.get(f.conversation_id);
    if (row) row.querySelector('[data-testid=assign-submit]').disabled = false;
    return;
  } else if (f.type !== 'stats_delta') return;
  for (const t of f.teams || []) teams.set(t.team_id, { ...t, at: now });
  for (const a of f.agents || []) agents.set(a.agent_id, a);
  for (const w of f.waiting || []) waiting.set(w.conversation_id, w);
  for (const w of f.waiting_added || []) waiting.set(w.conversation_id, w);
  for (const id of f.waiting_removed || []) waiting.delete(id);
  renderTeams();
  renderAgents();
  renderWaiting();
  scheduleRecent();
}

// ---- teams -------------------------------------------------------------------------------

/** The longest wait, live: from the oldest `since` we know, else the server's figure aged. */
function longestWait(t) {
  let oldest = Infinity;
  for (const w of waiting.values()) if (w.team_id === t.team_id) oldest = Math.min(oldest, Date.parse(w.since));
  if (oldest !== Infinity) return Date.now() - oldest;
  return t.waiting && t.longest_wait_ms ? t.longest_wait_ms + (Date.now() - t.at) : 0;
}

function renderTeams() {
  const list = [...teams.values()].sort((a, b) => teamName(a.team_id).localeCompare(teamName(b.team_id)));
  const stat = (testid, label, value, extra) => h('div', { class: `stat ${extra || ''}` },
    h('span', { class: 'stat-value', testid }, String(value)),
    h('span', { class: 'stat-label' }, label));
  $('teams').replaceChildren(...(list.length ? list.map((t) => h('section', {
    class: `card team-card${t.waiting ? ' busy' : ''}`, testid: 'team-card', 'data-team-id': t.team_id,
  },
  h('h3', {}, teamName(t.team_id)),
  h('div', { class: 'stats' },
    stat('team-waiting', 'waiting', t.waiting),
    stat('team-longest-wait', 'longest wait', fmtDuration(longestWait(t)), 'wait'),
    // Null while too few conversations ended lately to say.
    stat('team-expected-wait', t.expected_wait_ms ? `expected wait (p90 ${fmtDuration(t.expected_wait_ms.p90)})` : 'expected wait',
      t.expected_wait_ms ? fmtDuration(t.expected_wait_ms.p50) : '—', 'wait'),
    stat('team-online', 'online', t.agents_online),
    stat('team-available', 'available', t.agents_available),
    stat('team-active', 'active', t.active),
    stat('team-sla-breached', 'SLA breached', t.sla_breached || 0, t.sla_breached ? 'alert' : ''),
    stat('team-sla-at-risk', 'SLA at risk', t.sla_at_risk || 0, t.sla_at_risk ? 'warn' : '')))) : [h('p', { class: 'empty' }, 'No team stats yet.')]));
}

// ---- agents ------------------------------------------------------------------------------

function renderAgents() {
  const list = [...agents.values()].sort((a, b) => (PRESENCE_ORDER[a.presence] - PRESENCE_ORDER[b.presence])
    || a.name.localeCompare(b.name));
  $('agents').replaceChildren(...list.map((a) => {
    const pct = a.capacity ? Math.min(100, Math.round((100 * a.load) / a.capacity)) : 0;
    const bar = h('span', { class: `bar-fill${pct >= 100 ? ' full' : ''}` });
    bar.style.width = `${pct}%`; // CSP allows styles set from script, not style="" attributes
    const teamNames = (dir.agents.get(a.agent_id)?.team_ids || []).map(teamName).join(', ');
    return h('tr', { testid: 'agent-row', 'data-agent-id': a.agent_id },
      h('td', {}, a.name || agentName(a.agent_id)),
      h('td', { class: 'sub' }, teamNames),
      h('td', {}, h('span', { class: `badge presence-badge ${a.presence}`, testid: 'agent-presence' }, a.presence)),
      h('td', { class: 'load' },
        h('span', { testid: 'agent-load' }, `${a.load}/${a.capacity}`),
        h('span', { class: 'bar' }, bar)));
  }));
}

// ---- waiting -----------------------------------------------------------------------------

/** Best candidates first: online with room, then the team's own agents, then the most room. */
function candidates(teamId) {
  const score = (a) => {
    const free = a.capacity - a.load;
    const inTeam = (dir.agents.get(a.agent_id)?.team_ids || []).includes(teamId) ? 0 : 1;
    return [a.presence === 'online' && free > 0 ? 0 : 1, inTeam, PRESENCE_ORDER[a.presence] ?? 3, -free];
  };
  // Only the team's members: the server refuses anyone else.
  const member = (a) => !dir.agents.has(a.agent_id) || (dir.agents.get(a.agent_id).team_ids || []).includes(teamId);
  return [...agents.values()].filter(member).sort((x, y) => {
    const [a, b] = [score(x), score(y)];
    for (let i = 0; i < a.length; i += 1) if (a[i] !== b[i]) return a[i] - b[i];
    return x.name.localeCompare(y.name);
  });
}

function fillSelect(select, teamId) {
  const options = candidates(teamId).map((a) => [a.agent_id, `${a.name} — ${a.load}/${a.capacity} · ${a.presence}`]);
  // Rebuild only when something changed: rebuilding closes a dropdown the supervisor has open.
  const signature = JSON.stringify(options);
  if (select.dataset.signature === signature) return;
  select.dataset.signature = signature;
  const keep = select.value;
  select.replaceChildren(...options.map(([id, label]) => h('option', { value: id }, label)));
  if (keep && agents.has(keep)) select.value = keep;
}

function renderWaiting() {
  for (const [id, row] of rows) {
    if (!waiting.has(id)) {
      row.remove();
      rows.delete(id);
    }
  }
  const list = [...waiting.values()].sort((a, b) => a.since.localeCompare(b.since));
  const body = $('waiting');
  for (const w of list) {
    let row = rows.get(w.conversation_id);
    if (!row) {
      const select = h('select', { testid: 'assign-select', 'aria-label': 'Agent' });
      const button = h('button', { class: 'primary', testid: 'assign-submit' }, 'Assign');
      button.addEventListener('click', () => assign(w.conversation_id, select.value, button));
      row = h('tr', { testid: 'waiting-row', 'data-conversation-id': w.conversation_id },
        h('td', {}, h('button', { class: 'link mono', title: 'Show the audit trail', onclick: () => loadAudit(w.conversation_id) }, shortId(w.conversation_id))),
        h('td', {}, teamName(w.team_id), ' ', h('span', { class: 'sub', testid: 'waiting-position' })),
        h('td', { class: 'mono', 'data-since': w.since }, fmtClock(Date.now() - Date.parse(w.since))),
        h('td', { class: 'inline-form' }, select, button));
      rows.set(w.conversation_id, row);
    }
    fillSelect(row.querySelector('select'), w.team_id);
    row.querySelector('[data-testid=waiting-position]').textContent = w.position ? `#${w.position}` : '';
    // A breach arrives as the same entry again: the mark follows it.
    row.classList.toggle('sla-breached', Boolean(w.sla_breached));
    const mark = row.querySelector('[data-sla-mark]');
    if (w.sla_breached && !mark) {
      row.cells[0].append(h('span', { class: 'badge sla breached', testid: 'waiting-sla-breached', 'data-sla-mark': '' }, 'SLA breached'));
    } else if (!w.sla_breached && mark) mark.remove();
    body.append(row); // append moves an existing row: keeps oldest-first order
  }
  $('waiting-empty').hidden = list.length > 0;
  $('waiting-count').textContent = list.length || '';
}

function assign(conversationId, agentId, button) {
  if (!agentId) return toast('No agent to assign to.', 'error');
  if (!sock || !sock.send({ type: 'assign', conversation_id: conversationId, agent_id: agentId })) {
    return toast('Not connected — try again in a moment.', 'error');
  }
  // The row disappears when the server reports the conversation as no longer waiting.
  button.disabled = true;
  setTimeout(() => { button.disabled = false; }, 5000);
  return toast(`Assigning ${shortId(conversationId)} to ${agentName(agentId)}…`);
}

// ---- recent conversations & audit ----------------------------------------------------------

// Stats can change many times a second; the list is refreshed at most every 5 s.
function scheduleRecent() {
  if (recentTimer) return;
  recentTimer = setTimeout(refreshRecent, Math.max(0, recentAt + 5000 - Date.now()));
}

async function refreshRecent() {
  clearTimeout(recentTimer);
  recentTimer = null;
  recentAt = Date.now();
  let page;
  try {
    page = await api('GET', '/api/v1/conversations?limit=20');
  } catch (e) {
    $('recent').replaceChildren(h('li', { class: 'error' }, e.message));
    return;
  }
  if (!me) return;
  const items = page.items || [];
  $('recent').replaceChildren(...(items.length ? items.map((c) => h('li', {
    class: 'recent-item', tabindex: 0, 'data-conversation-id': c.id,
    onclick: () => loadAudit(c.id),
    onkeydown: (ev) => { if (ev.key === 'Enter') loadAudit(c.id); },
  },
  h('div', { class: 'row' },
    h('strong', { class: 'name' }, contactName(c.contact)),
    h('span', { class: `badge status ${c.status}` }, c.status)),
  h('div', { class: 'sub' },
    `${teamName(c.team_id)}${c.assigned_agent_id ? ` · ${agentName(c.assigned_agent_id)}` : ''} · ${fmtTime(c.updated_at)}`)))
    : [h('li', { class: 'empty' }, 'No conversations yet')]));
}

async function loadAudit(id) {
  $('audit-input').value = id;
  const path = `/api/v1/conversations/${encodeURIComponent(id)}`;
  $('audit').replaceChildren(h('li', { class: 'empty' }, 'Loading…'));
  $('audit-head').replaceChildren();
  const [conv, audit] = await Promise.allSettled([api('GET', path), api('GET', `${path}/audit`)]);
  if ($('audit-input').value !== id) return; // another one was asked for meanwhile
  if (conv.status === 'fulfilled') {
    const c = conv.value;
    $('audit-head').replaceChildren(
      h('strong', {}, contactName(c.contact)), ' ',
      h('span', { class: `badge status ${c.status}` }, c.status),
      h('div', { class: 'sub mono' }, c.id),
      h('div', { class: 'sub' }, `${teamName(c.team_id)}${c.assigned_agent_id ? ` · ${agentName(c.assigned_agent_id)}` : ''}`));
  }
  if (audit.status === 'rejected') {
    $('audit').replaceChildren(h('li', { class: 'error' }, audit.reason.message));
    return;
  }
  const items = audit.value.items || [];
  $('audit').replaceChildren(...(items.length ? items.map((e) => h('li', {
    class: 'audit-event', testid: 'audit-event', title: e.reason ? JSON.stringify(e.reason) : null,
  },
  h('time', { datetime: e.at || e.created_at }, fmtTime(e.at || e.created_at)),
  h('div', {}, e.text),
  h('div', { class: 'sub' }, [e.kind, e.agent_id ? agentName(e.agent_id) : null].filter(Boolean).join(' · '))))
    : [h('li', { class: 'empty' }, 'No routing events recorded.')]));
}

// ---- the clock ---------------------------------------------------------------------------

function tick() {
  const now = Date.now();
  for (const node of document.querySelectorAll('[data-since]')) node.textContent = fmtClock(now - Date.parse(node.dataset.since));
  for (const card of document.querySelectorAll('.team-card')) {
    const t = teams.get(card.dataset.teamId);
    if (t) card.querySelector('[data-testid=team-longest-wait]').textContent = fmtDuration(longestWait(t));
  }
}
