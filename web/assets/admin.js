// The admin pages (/admin): the first-run setup with the bootstrap token, then the workspace's
// settings, one section per hash route (#teams .. #api-tokens), each a list beside a form built
// by admin-forms.js. Workspace admins only; REST only (no socket).
import {
  api, ApiError, apiBlob, bootAuth, clearFormErrors, closePasswordDialog, contactName, fieldError, getSession, h,
  labelled, loadDirectory, openPasswordDialog, shortId, showFormErrors, signIn, toast,
} from '/assets/api.js';
import {
  buildField, buildForm, FieldProblem, FieldProblems, getPath, listOf, listTable, OMIT, parseIntervals,
  parseOverrides, readField, refreshOptions, renderIntervals, renderOverrides, rowButton, setPath,
  splitList, writeField, yesNo,
} from '/assets/admin-forms.js';

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const DAY_MS = 24 * 3600 * 1000;

let me = null; // the session, while signed in

// The workspace's settings other sections pick from (selects, names in tables).
const cache = { teams: [], agents: [], channels: [], calendars: [], policies: [] };
const REF_PATHS = { teams: 'teams', agents: 'agents', channels: 'channels', calendars: 'calendars', policies: 'sla-policies' };

function wsPath(rest = '') {
  if (!me) throw new ApiError('signed_out', 'Signed out.', 0);
  return `/api/v1/workspaces/${enc(me.workspace_id)}${rest ? `/${rest}` : ''}`;
}

async function loadRef(kind) {
  cache[kind] = listOf(await api('GET', wsPath(REF_PATHS[kind])));
  return cache[kind];
}

const options = (kind, text = (item) => item.name) => cache[kind].map((item) => [item.id, text(item)]);

function nameOf(kind, id) {
  if (!id) return '';
  const found = cache[kind].find((item) => item.id === id);
  return found ? found.name || found.display_phone_number : shortId(id);
}

const when = (iso) => (iso ? new Date(iso).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' }) : '');
const capital = (text) => text[0].toUpperCase() + text.slice(1);
const secs = (n) => (n == null ? '' : `${n} s`);

function sectionNode(id, title, ...children) {
  return h('section', { id: `section-${id}`, class: 'admin-section', testid: `section-${id}`, hidden: true },
    h('h1', { tabindex: -1 }, title), ...children);
}

// ---- a list beside its form ------------------------------------------------------------------

/** What a row is called, for its buttons' accessible names and for confirmations. */
const rowName = (item) => item.name || (item.shortcut ? `/${item.shortcut}` : '') || item.display_phone_number || '';

/**
 * The usual section: the items of `path` in a table (Edit, Delete, extra buttons) beside a
 * form that creates (POST) or edits (PATCH) one. One form = one request; after a save the
 * list is reloaded. `afterCreate: 'edit'` keeps the created item in the form (Save), else the
 * form is cleared for the next one (Create).
 */
function crudSection({
  id, title, noun, path, kind, needs = [], fields, finish, columns, rowButtons, editable = true,
  deletable = false, deleteText = 'Delete', afterCreate = 'reset', onMode, onCreated, onShow, below = [],
  confirmSave,
  beside = null, emptyText = 'None yet.',
}) {
  let items = [];
  const heading = h('h2', { class: 'form-title' });
  const count = h('span', { class: 'count' });
  const form = buildForm({ fields, finish, testid: `${id}-form`, submit: save });
  const newButton = h('button', { type: 'button', class: 'small', testid: `${id}-new` }, 'New');
  const table = listTable({
    columns,
    testid: `${id}-list`,
    empty: emptyText,
    buttons: (item) => [
      editable ? rowButton('Edit', async () => edit(item), '', rowName(item)) : null,
      ...(rowButtons ? rowButtons(item) : []),
      deletable ? rowButton(deleteText, () => remove(item), 'danger', rowName(item)) : null,
    ].filter(Boolean),
  });
  const formCard = h('div', { class: 'card form-card' },
    h('div', { class: 'card-head' }, heading, editable ? newButton : null), form.node, ...below);
  const node = sectionNode(id, title, h('div', { class: `admin-grid${beside ? ' three' : ''}` },
    h('div', { class: 'card list-card' }, h('h2', {}, title, ' ', count), table.node), formCard, beside));

  function modeChanged() {
    heading.textContent = form.mode === 'edit' ? `Edit ${noun}` : `New ${noun}`;
    onMode?.(form);
  }

  function edit(item) {
    form.load(item);
    modeChanged();
    form.focusFirst();
    formCard.scrollIntoView({ block: 'nearest' });
  }

  function fresh() {
    form.reset();
    modeChanged();
  }

  newButton.addEventListener('click', () => { fresh(); form.focusFirst(); });

  async function save(body) {
    const editing = form.mode === 'edit';
    // A change with consequences asks first (the question, or nothing to ask).
    const question = editing && confirmSave?.(body, form.item);
    if (question && !window.confirm(question)) return;
    const saved = editing
      ? await api('PATCH', wsPath(`${path}/${enc(form.item.id)}`), body)
      : await api('POST', wsPath(path), body);
    toast(`${capital(noun)} ${editing ? 'saved' : 'created'}.`);
    await reload().catch((e) => toast(`${title}: ${e.message}`, 'error'));
    if (editing || afterCreate === 'edit') form.load(saved);
    else form.reset();
    modeChanged();
    if (!editing) onCreated?.(saved);
  }

  async function remove(item) {
    const what = rowName(item) || noun;
    const consequence = deleteText === 'Revoke'
      ? 'Anything using it is refused from now on, and its open sockets close.'
      : 'This cannot be undone.';
    if (!window.confirm(`${deleteText} ${noun} "${what}"? ${consequence}`)) return;
    await api('DELETE', wsPath(`${path}/${enc(item.id)}`));
    toast(`${capital(noun)} ${deleteText === 'Revoke' ? 'revoked' : 'deleted'}.`);
    if (form.item?.id === item.id) fresh();
    await reload();
  }

  const fetchList = async () => listOf(await api('GET', wsPath(path)));

  function apply(list) {
    items = list;
    if (kind) cache[kind] = list;
    table.render(items);
    count.textContent = items.length ? String(items.length) : '';
  }

  async function reload() {
    apply(await fetchList());
  }

  modeChanged();
  return {
    id,
    node,
    form,
    async show() {
      try {
        const [list] = await Promise.all([fetchList(), ...needs.map(loadRef)]);
        apply(list);
      } catch (e) {
        if (me) toast(`${title}: ${e.message}`, 'error');
      }
      form.refresh();
      onShow?.();
    },
    reset() {
      apply([]);
      fresh();
    },
  };
}

// ---- Teams -----------------------------------------------------------------------------------

function teamsSection() {
  return crudSection({
    id: 'teams', title: 'Teams', noun: 'team', path: 'teams', kind: 'teams', needs: ['calendars', 'policies'],
    fields: [
      { key: 'name', label: 'Name', required: true },
      { key: 'offer_timeout_secs', label: 'Offer timeout secs', type: 'number', default: 30, hint: 'how long an offer waits for an answer, 1 to 3600' },
      { key: 'auto_accept', label: 'Auto accept', type: 'checkbox', hint: 'offers become assignments at once' },
      { key: 'calendar_id', label: 'Calendar', type: 'select', hint: 'business hours', options: () => [['', 'Always open'], ...options('calendars')] },
      { key: 'out_of_hours_reply', label: 'Out of hours reply', type: 'textarea', hint: 'sent once when a customer writes while the team is closed; empty: none' },
      { key: 'offer_outside_hours', label: 'Offer outside hours', type: 'checkbox', default: true, hint: 'unchecked: after hours, conversations wait for opening' },
      { key: 'sla_policy_id', label: 'SLA policy', type: 'select', options: () => [['', 'None'], ...options('policies')] },
      { key: 'auto_resolve_after_secs', label: 'Auto resolve after secs', type: 'number', hint: "resolve when the customer has not answered an agent's reply for this long; empty: never" },
      { key: 'auto_resolve_message', label: 'Auto resolve message', type: 'textarea', hint: 'sent when resolving for inactivity; empty: none' },
      { key: 'active', label: 'Active', type: 'checkbox', only: 'edit', default: true },
    ],
    columns: [
      ['Name', (t) => t.name],
      ['Offer timeout', (t) => secs(t.offer_timeout_secs)],
      ['Auto accept', (t) => yesNo(t.auto_accept)],
      ['Calendar', (t) => (t.calendar_id ? nameOf('calendars', t.calendar_id) : 'Always open')],
      ['SLA policy', (t) => (t.sla_policy_id ? nameOf('policies', t.sla_policy_id) : 'None')],
      ['Auto resolve', (t) => (t.auto_resolve_after_secs ? secs(t.auto_resolve_after_secs) : 'Never')],
      ['Active', (t) => yesNo(t.active)],
    ],
  });
}

// ---- Agents ----------------------------------------------------------------------------------

const ROLES = [['agent', 'agent'], ['supervisor', 'supervisor'], ['admin', 'admin']];

function agentsSection() {
  return crudSection({
    id: 'agents', title: 'Agents', noun: 'agent', path: 'agents', kind: 'agents', needs: ['teams'],
    confirmSave: (body, agent) => (body.active === false
      ? `Deactivate ${agent.name}? Their sessions end and their conversations go back to the queue.`
      : null),
    fields: [
      { key: 'name', label: 'Name', required: true },
      { key: 'email', label: 'Email', type: 'email', required: true, hint: 'unique across the installation' },
      {
        key: 'password', label: 'Password', type: 'password', secret: true, required: 'create',
        hint: (mode) => (mode === 'edit'
          ? 'leave empty to keep; a new password signs this agent out everywhere'
          : 'at least 10 characters'),
      },
      { key: 'role', label: 'Role', type: 'select', required: true, default: 'agent', options: () => ROLES },
      { key: 'capacity', label: 'Capacity', type: 'number', default: 4, hint: 'conversations at once' },
      { key: 'team_ids', label: 'Teams', type: 'checks', options: () => options('teams') },
      { key: 'skills', label: 'Skills', type: 'list', hint: 'comma separated' },
      { key: 'active', label: 'Active', type: 'checkbox', default: true, hint: 'unchecking deactivates: sessions end, conversations go back to the queue' },
    ],
    columns: [
      ['Name', (a) => a.name],
      ['Email', (a) => a.email],
      ['Role', (a) => a.role],
      ['Capacity', (a) => String(a.capacity)],
      ['Teams', (a) => (a.team_ids || []).map((t) => nameOf('teams', t)).join(', ')],
      ['Active', (a) => yesNo(a.active)],
    ],
  });
}

// ---- Channels --------------------------------------------------------------------------------

function channelsSection() {
  const sync = (channel) => rowButton('Sync templates', async () => {
    try {
      const answer = await api('POST', wsPath(`channels/${enc(channel.id)}/templates/sync`));
      toast(`Templates synced for ${channel.display_phone_number}: ${answer?.synced ?? 0}.`);
    } catch (e) {
      // 502 when Meta cannot be reached or refuses: its message says why.
      toast(`Sync templates: ${e.message}`, 'error');
    }
  });
  return crudSection({
    id: 'channels', title: 'Channels', noun: 'channel', path: 'channels', kind: 'channels', needs: ['teams'],
    fields: [
      { key: 'phone_number_id', label: 'Phone number id', required: true, lockOnEdit: true, hint: "Meta's id of the number (digits); cannot change" },
      { key: 'display_phone_number', label: 'Display phone number', required: true },
      { key: 'waba_id', label: 'WABA id', hint: 'the WhatsApp Business Account; needed to sync templates' },
      {
        key: 'access_token', label: 'Access token', type: 'password', secret: true, required: 'create',
        hint: (mode) => (mode === 'edit' ? 'write-only; leave empty to keep the current one' : 'write-only: never shown again'),
      },
      { key: 'team_id', label: 'Team', type: 'select', required: true, hint: 'conversations to this number are routed in it', options: () => options('teams') },
      { key: 'required_skills', label: 'Required skills', type: 'list', hint: 'comma separated; agents need them all' },
      { key: 'paused', label: 'Paused', type: 'checkbox', only: 'edit', hint: 'uncheck to resume sending' },
      { key: 'active', label: 'Active', type: 'checkbox', only: 'edit', default: true },
    ],
    columns: [
      ['Display phone number', (c) => c.display_phone_number],
      ['Phone number id', (c) => c.phone_number_id],
      ['WABA id', (c) => c.waba_id || ''],
      ['Team', (c) => nameOf('teams', c.team_id)],
      ['Paused', (c) => (c.paused ? `Yes${c.pause_reason ? ` (${c.pause_reason})` : ''}` : 'No')],
      ['Active', (c) => yesNo(c.active)],
    ],
    rowButtons: (channel) => [sync(channel)],
  });
}

// ---- Calendars -------------------------------------------------------------------------------

const DAYS = [['mon', 'Mon'], ['tue', 'Tue'], ['wed', 'Wed'], ['thu', 'Thu'], ['fri', 'Fri'], ['sat', 'Sat'], ['sun', 'Sun']];
const browserZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

function zoneDatalist() {
  const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
  return h('datalist', { id: 'time-zones' }, ...zones.map((zone) => h('option', { value: zone })));
}

/** (instant) => {day: "Mon 1 Dec", time: "09:00"} in `zone`. */
function zonedClock(zone) {
  const make = (timeZone) => new Intl.DateTimeFormat('en-GB', {
    timeZone, weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
  });
  let format;
  try { format = make(zone); } catch { format = make('UTC'); }
  return (date) => {
    const p = Object.fromEntries(format.formatToParts(date).map((part) => [part.type, part.value]));
    return { day: `${p.weekday} ${p.day} ${p.month}`, time: `${p.hour === '24' ? '00' : p.hour}:${p.minute}` };
  };
}

/** "Mon 1 Dec 09:00-17:00"; an interval to midnight ends at 24:00; one over days names both. */
export function spanText(span, clock) {
  const start = clock(new Date(span.start));
  const endAt = new Date(span.end);
  const end = clock(endAt);
  if (end.day === start.day) return `${start.day} ${start.time}-${end.time}`;
  if (end.time === '00:00' && clock(new Date(endAt.getTime() - 60000)).day === start.day) {
    return `${start.day} ${start.time}-24:00`;
  }
  return `${start.day} ${start.time} - ${end.day} ${end.time}`;
}

function calendarsSection() {
  const list = h('ul', { class: 'schedule', testid: 'schedule' });
  const note = h('p', { class: 'sub' });
  const box = h('div', { class: 'schedule-box', testid: 'schedule-box', hidden: true }, h('h3', {}, 'The coming week'), note, list);
  let asked = 0;

  async function showSchedule(calendar) {
    const ask = ++asked;
    box.hidden = false;
    note.textContent = `Open hours from now, in ${calendar.time_zone}.`;
    list.replaceChildren(h('li', { class: 'sub' }, 'Loading…'));
    const from = new Date();
    const to = new Date(from.getTime() + 7 * DAY_MS);
    try {
      const answer = await api('GET', wsPath(`calendars/${enc(calendar.id)}/schedule?from=${enc(from.toISOString())}&to=${enc(to.toISOString())}`));
      if (ask !== asked) return;
      const clock = zonedClock(calendar.time_zone);
      const spans = listOf(answer);
      list.replaceChildren(...(spans.length ? spans.map((span) => h('li', {}, spanText(span, clock)))
        : [h('li', { class: 'empty' }, 'Closed all week.')]));
    } catch (e) {
      if (ask === asked) list.replaceChildren(h('li', { class: 'error' }, e.message));
    }
  }

  const day = ([key, label]) => ({
    key: `weekly.${key}`, label, attrs: { placeholder: key === 'sat' || key === 'sun' ? 'closed' : '09:00-17:00' },
    format: renderIntervals,
    parse(raw) {
      const pairs = parseIntervals(raw);
      if (pairs === null) throw new FieldProblem(`weekly.${key}`, 'Write the hours as 09:00-12:00, 13:00-17:00 (empty: closed).');
      return pairs.length ? pairs : OMIT; // a missing day is closed
    },
  });

  const section = crudSection({
    id: 'calendars', title: 'Calendars', noun: 'calendar', path: 'calendars', kind: 'calendars', afterCreate: 'edit',
    fields: [
      { key: 'name', label: 'Name', required: true },
      { key: 'time_zone', label: 'Time zone', required: true, default: browserZone, hint: 'an IANA name, like Europe/London', attrs: { list: 'time-zones', placeholder: 'Europe/London' } },
      { type: 'group', legend: 'Weekly', note: 'Each day like 09:00-12:00, 13:00-17:00. Empty: closed; 00:00-24:00: all day.', fields: DAYS.map(day) },
      {
        key: 'overrides', label: 'Overrides', type: 'textarea', attrs: { rows: 4, placeholder: '2026-12-25 closed Christmas\n2026-12-24 09:00-13:00 Christmas Eve' },
        hint: 'one date a line: "YYYY-MM-DD closed [label]" or "YYYY-MM-DD 09:00-13:00[, ...] [label]"',
        parse: (raw) => parseOverrides(raw), format: renderOverrides,
      },
    ],
    // Every day closed is still a weekly pattern: the API wants the map.
    finish: (body) => { body.weekly = body.weekly || {}; },
    columns: [
      ['Name', (c) => c.name],
      ['Time zone', (c) => c.time_zone],
      ['Open days', (c) => DAYS.filter(([key]) => c.weekly?.[key]?.length).map(([, label]) => label).join(' ') || 'none'],
      ['Overrides', (c) => String((c.overrides || []).length)],
    ],
    below: [box],
    onMode(form) {
      if (form.mode === 'edit' && form.item) showSchedule(form.item);
      else { asked += 1; box.hidden = true; list.replaceChildren(); }
    },
  });
  section.node.append(zoneDatalist());
  return section;
}

// ---- SLA policies ----------------------------------------------------------------------------

function policiesSection() {
  const target = 'empty: no target';
  return crudSection({
    id: 'sla-policies', title: 'SLA policies', noun: 'SLA policy', path: 'sla-policies', kind: 'policies',
    fields: [
      { key: 'name', label: 'Name', required: true },
      { key: 'first_response_secs', label: 'First response secs', type: 'number', hint: target },
      { key: 'next_response_secs', label: 'Next response secs', type: 'number', hint: target },
      { key: 'resolution_secs', label: 'Resolution secs', type: 'number', hint: target },
      { key: 'business_hours', label: 'Business hours', type: 'checkbox', hint: "clocks run only while the team's calendar is open" },
      { key: 'warn_before_secs', label: 'Warn before secs', type: 'number', hint: 'warn the agent this long before a deadline; empty: no warning' },
    ],
    columns: [
      ['Name', (p) => p.name],
      ['First response', (p) => secs(p.first_response_secs)],
      ['Next response', (p) => secs(p.next_response_secs)],
      ['Resolution', (p) => secs(p.resolution_secs)],
      ['Business hours', (p) => yesNo(p.business_hours)],
      ['Warn before', (p) => secs(p.warn_before_secs)],
    ],
  });
}

// ---- Automations -----------------------------------------------------------------------------

const TRIGGERS = ['conversation_created', 'message_received', 'conversation_resolved', 'no_agent_reply', 'no_customer_reply'];
const TIMERS = new Set(['no_agent_reply', 'no_customer_reply']);
const COND_FIELDS = ['message.text', 'message.kind', 'message.button_payload', 'channel_id', 'team_id', 'contact.phone',
  'contact.name', 'contact.is_new', 'conversation.tags', 'conversation.priority', 'within_hours'];
const FLAG_FIELDS = new Set(['contact.is_new', 'within_hours']);
const VALUE_OPS = ['equals', 'not_equals', 'contains', 'starts_with', 'matches', 'in'];
const FLAG_OPS = ['is_true', 'is_false'];
const ACTION_TYPES = ['assign_team', 'assign_agent', 'add_tags', 'set_priority', 'send_text', 'send_template', 'apply_sla', 'resolve'];
const MESSAGE_KINDS = ['text', 'button', 'interactive', 'image', 'video', 'audio', 'document', 'sticker', 'location', 'contacts', 'reaction', 'order'];

function parseComponents(raw, at) {
  const text = raw.trim();
  if (!text) return [];
  let value;
  try { value = JSON.parse(text); } catch (e) { throw new FieldProblem(at, `Components must be JSON: ${e.message}`); }
  if (!Array.isArray(value)) throw new FieldProblem(at, 'Components are a JSON list of objects.');
  return value;
}

// The parameters each action type takes (keys as the API spells them).
const ACTION_PARAMS = {
  assign_team: [{ key: 'team_id', label: 'Team', type: 'select', required: true, options: () => options('teams') }],
  assign_agent: [{ key: 'agent_id', label: 'Agent', type: 'select', required: true, options: () => options('agents') }],
  add_tags: [{ key: 'tags', label: 'Tags', type: 'list', hint: 'comma separated' }],
  set_priority: [{ key: 'priority', label: 'Priority', type: 'number', required: true, hint: '-100 to 100' }],
  send_text: [{ key: 'text', label: 'Text', type: 'textarea', required: true, hint: 'placeholders: {{contact.name}}, {{contact.phone}}, {{team.name}}, {{expected_wait}}; only inside the 24-hour window' }],
  send_template: [
    // `template` as data-field: the server refuses a template as a whole at `actions[i].template`.
    { key: 'template.name', field: 'template', label: 'Template name', required: true, hint: 'an approved template' },
    { key: 'template.language.code', label: 'Language', required: true, default: 'en_US', hint: 'like en_US' },
    {
      key: 'template.components', label: 'Components', type: 'textarea', hint: "Meta's components as JSON; empty: none",
      format: (v) => (Array.isArray(v) && v.length ? JSON.stringify(v, null, 2) : ''),
    },
  ],
  apply_sla: [{ key: 'sla_policy_id', label: 'SLA policy', type: 'select', required: true, options: () => options('policies') }],
  resolve: [],
};

/** Sets the data-field of every element of a row from the row's path (rows renumber on remove). */
function renumberRow(row, prefix) {
  row.dataset.field = prefix;
  for (const el of row.querySelectorAll('[data-suffix]')) el.dataset.field = `${prefix}${el.dataset.suffix}`;
}

const isLeaf = (c) => c && typeof c === 'object' && !Array.isArray(c) && 'field' in c;

/** The conditions: `Match` all/any over rows of Field, Operator, Value; or JSON when nested. */
function conditionsEditor() {
  const parts = new WeakMap(); // row -> its controls
  const match = h('select', { 'data-field': 'conditions' },
    h('option', { value: 'all' }, 'all of these'), h('option', { value: 'any' }, 'any of these'));
  const rows = h('div', { class: 'rows' });
  const none = h('p', { class: 'sub' }, 'No conditions: the rule runs on every event of its trigger.');
  const add = h('button', { type: 'button', class: 'small' }, 'Add condition');
  const asJson = h('button', { type: 'button', class: 'small' }, 'Edit as JSON');
  const json = h('textarea', { 'data-field': 'conditions', rows: 8, class: 'mono', spellcheck: 'false' });
  const asRows = h('button', { type: 'button', class: 'small' }, 'Edit as rows');
  const rowsPart = h('div', { class: 'rows-part' }, labelled('Match', match), rows, none, h('div', { class: 'row-tools' }, add, asJson));
  const jsonPart = h('div', { class: 'json-part', hidden: true },
    labelled('Conditions JSON', json, '{"all": [...]} or {"any": [...]} of {field, op, value}, nestable; sent as written'),
    h('div', { class: 'row-tools' }, asRows));
  const node = h('fieldset', { class: 'group conditions' }, h('legend', {}, 'Conditions'), rowsPart, jsonPart);
  const lists = { team_id: h('datalist', { id: 'cond-team-ids' }), channel_id: h('datalist', { id: 'cond-channel-ids' }) };
  node.append(...Object.values(lists));
  let jsonMode = false;

  const setJsonMode = (on) => { jsonMode = on; rowsPart.hidden = on; jsonPart.hidden = !on; };

  function renumber() {
    [...rows.children].forEach((row, i) => {
      row.querySelector('legend').textContent = `Condition ${i + 1}`;
      renumberRow(row, `conditions.${match.value}[${i}]`);
    });
    none.hidden = rows.children.length > 0;
  }

  function addRow(condition = {}) {
    const field = h('select', { 'data-suffix': '.field' }, ...COND_FIELDS.map((f) => h('option', { value: f }, f)));
    const op = h('select', { 'data-suffix': '.op' });
    const value = h('input', { type: 'text', 'data-suffix': '.value', autocomplete: 'off' });
    const valueLabel = labelled('Value', value);
    const remove = h('button', { type: 'button', class: 'small danger' }, 'Remove');
    const row = h('fieldset', { class: 'cond-row' }, h('legend', {}),
      labelled('Field', field), labelled('Operator', op), valueLabel, remove, fieldError());
    const syncValue = () => {
      valueLabel.hidden = FLAG_OPS.includes(op.value);
      value.placeholder = op.value === 'in' ? 'a, b, c'
        : op.value === 'matches' ? 'a regular expression'
          : field.value === 'conversation.priority' ? 'a whole number' : '';
      // Ids are long: offer the workspace's, by name.
      if (lists[field.value]) value.setAttribute('list', lists[field.value].id);
      else value.removeAttribute('list');
    };
    const fillOps = () => {
      const ops = FLAG_FIELDS.has(field.value) ? FLAG_OPS : VALUE_OPS;
      const current = op.value;
      op.replaceChildren(...ops.map((o) => h('option', { value: o }, o)));
      if (ops.includes(current)) op.value = current;
      syncValue();
    };
    field.addEventListener('change', fillOps);
    op.addEventListener('change', syncValue);
    remove.addEventListener('click', () => {
      row.remove();
      renumber();
      (rows.querySelector('select') || add).focus();
    });
    if (condition.field) {
      if (!COND_FIELDS.includes(condition.field)) field.append(h('option', { value: condition.field }, condition.field));
      field.value = condition.field;
    }
    fillOps();
    if (condition.op) {
      if (![...op.options].some((o) => o.value === condition.op)) op.append(h('option', { value: condition.op }, condition.op));
      op.value = condition.op;
    }
    syncValue();
    const v = condition.value;
    value.value = Array.isArray(v) ? v.join(', ') : v == null ? '' : String(v);
    parts.set(row, { field, op, value });
    rows.append(row);
    renumber();
    return row;
  }

  function readRow(row) {
    const { field, op, value } = parts.get(row);
    const at = `${row.dataset.field}.value`;
    const leaf = { field: field.value, op: op.value };
    if (FLAG_OPS.includes(op.value)) return leaf; // is_true / is_false take no value
    const raw = value.value;
    if (op.value === 'in') {
      leaf.value = splitList(raw);
      if (!leaf.value.length) throw new FieldProblem(at, 'Give at least one value, comma separated.');
    } else if (field.value === 'conversation.priority' && (op.value === 'equals' || op.value === 'not_equals')) {
      const n = Number(raw.trim());
      if (!raw.trim() || !Number.isInteger(n)) throw new FieldProblem(at, 'Enter a whole number.');
      leaf.value = n;
    } else {
      leaf.value = raw;
    }
    return leaf;
  }

  function read() {
    if (jsonMode) {
      const text = json.value.trim();
      if (!text) return { all: [] };
      try { return JSON.parse(text); } catch (e) { throw new FieldProblem('conditions', `Conditions JSON is not valid JSON: ${e.message}`); }
    }
    const problems = [];
    const list = [];
    for (const row of rows.children) {
      try { list.push(readRow(row)); } catch (e) { if (e instanceof FieldProblem) problems.push(e); else throw e; }
    }
    if (problems.length) throw new FieldProblems(problems);
    return { [match.value]: list };
  }

  /** Rows when the form can show them (one group of tests), else false. */
  function writeRows(conditions) {
    const c = conditions ?? { all: [] };
    let group = null;
    let list = null;
    if (isLeaf(c)) [group, list] = ['all', [c]];
    else if (c && typeof c === 'object' && Object.keys(c).length === 1 && Array.isArray(c.all)) [group, list] = ['all', c.all];
    else if (c && typeof c === 'object' && Object.keys(c).length === 1 && Array.isArray(c.any)) [group, list] = ['any', c.any];
    if (!list || !list.every(isLeaf)) return false;
    rows.replaceChildren();
    match.value = group;
    list.forEach((leaf) => addRow(leaf));
    renumber();
    setJsonMode(false);
    return true;
  }

  function write(conditions) {
    if (writeRows(conditions)) { json.value = ''; return; }
    rows.replaceChildren();
    renumber();
    json.value = JSON.stringify(conditions, null, 2);
    setJsonMode(true);
  }

  add.addEventListener('click', () => addRow().querySelector('select').focus());
  match.addEventListener('change', renumber);
  asJson.addEventListener('click', () => {
    const form = node.closest('form');
    clearFormErrors(form);
    try {
      json.value = JSON.stringify(read(), null, 2);
      setJsonMode(true);
      json.focus();
    } catch (e) {
      if (e instanceof FieldProblems) showFormErrors(form, e.list);
      else throw e;
    }
  });
  asRows.addEventListener('click', () => {
    const form = node.closest('form');
    clearFormErrors(form);
    try {
      const value = read();
      if (!writeRows(value)) {
        throw new FieldProblem('conditions', 'These conditions nest deeper than the rows show: keep editing them as JSON.');
      }
      match.focus();
    } catch (e) {
      if (e instanceof FieldProblem) showFormErrors(form, e);
      else throw e;
    }
  });

  return {
    type: 'custom', key: 'conditions', node,
    read, write,
    reset: () => write({ all: [] }),
    refresh() {
      lists.team_id.replaceChildren(...cache.teams.map((t) => h('option', { value: t.id }, t.name)));
      lists.channel_id.replaceChildren(...cache.channels.map((c) => h('option', { value: c.id }, c.display_phone_number)));
    },
  };
}

/** The actions, in order: rows of `Action` and the parameters its type takes. */
function actionsEditor() {
  const parts = new WeakMap(); // row -> {type, fields}
  const rows = h('div', { class: 'rows' });
  const none = h('p', { class: 'sub' }, 'No actions yet: a rule needs at least one.');
  const add = h('button', { type: 'button', class: 'small' }, 'Add action');
  const node = h('fieldset', { class: 'group actions-editor', 'data-field': 'actions' },
    h('legend', {}, 'Actions'), rows, none, h('div', { class: 'row-tools' }, add), fieldError());

  function renumber() {
    [...rows.children].forEach((row, i) => {
      row.querySelector('legend').textContent = `Action ${i + 1}`;
      renumberRow(row, `actions[${i}]`);
    });
    none.hidden = rows.children.length > 0;
  }

  function addRow(action = { type: 'assign_team' }) {
    const type = h('select', { 'data-suffix': '.type' }, ...ACTION_TYPES.map((t) => h('option', { value: t }, t)));
    const params = h('div', { class: 'params-box' });
    const remove = h('button', { type: 'button', class: 'small danger' }, 'Remove');
    const row = h('fieldset', { class: 'action-row' }, h('legend', {}), labelled('Action', type), params, remove, fieldError());
    const part = { type, fields: [] };
    const build = (values) => {
      part.fields = (ACTION_PARAMS[type.value] || []).map((spec) => {
        const field = buildField({ ...spec, field: spec.field || spec.key });
        field.control.dataset.suffix = `.${spec.field || spec.key}`;
        field.hint.textContent = spec.hint || '';
        refreshOptions(field);
        const given = values ? getPath(values, spec.key) : undefined;
        writeField(field, given === undefined ? spec.default : given);
        return field;
      });
      params.replaceChildren(...part.fields.map((f) => f.wrap));
      renumber();
    };
    if (action.type && !ACTION_TYPES.includes(action.type)) type.append(h('option', { value: action.type }, action.type));
    type.value = action.type || 'assign_team';
    type.addEventListener('change', () => build(null));
    remove.addEventListener('click', () => {
      row.remove();
      renumber();
      (rows.querySelector('select') || add).focus();
    });
    parts.set(row, part);
    rows.append(row);
    build(action);
    return row;
  }

  function read() {
    const problems = [];
    const list = [];
    for (const row of rows.children) {
      const { type, fields } = parts.get(row);
      const action = { type: type.value };
      for (const field of fields) {
        try {
          const value = field.spec.key === 'template.components'
            ? parseComponents(field.control.value, field.control.dataset.field)
            : readField(field, 'create');
          if (value !== OMIT) setPath(action, field.spec.key, value);
        } catch (e) {
          if (e instanceof FieldProblem) problems.push(e); else throw e;
        }
      }
      list.push(action);
    }
    if (problems.length) throw new FieldProblems(problems);
    return list;
  }

  add.addEventListener('click', () => addRow().querySelector('select').focus());

  return {
    type: 'custom', key: 'actions', node, read,
    write(actions) {
      rows.replaceChildren();
      for (const action of Array.isArray(actions) ? actions : []) addRow(action);
      renumber();
    },
    reset() { rows.replaceChildren(); renumber(); },
    refresh() {
      for (const row of rows.children) for (const field of parts.get(row).fields) refreshOptions(field);
    },
  };
}

function describeAction(a) {
  switch (a.type) {
    case 'assign_team': return `assign_team: ${nameOf('teams', a.team_id)}`;
    case 'assign_agent': return `assign_agent: ${nameOf('agents', a.agent_id)}`;
    case 'add_tags': return `add_tags: ${(a.tags || []).join(', ')}`;
    case 'set_priority': return `set_priority: ${a.priority}`;
    case 'send_text': return `send_text: ${a.text}`;
    case 'send_template': return `send_template: ${a.template?.name || ''} (${a.template?.language?.code || ''})`;
    case 'apply_sla': return `apply_sla: ${nameOf('policies', a.sla_policy_id)}`;
    default: return a.type;
  }
}

/** The dry run of the saved rule: a sample message in, whether it matches and why out. */
function dryRunPanel() {
  let rule = null;
  const note = h('p', { class: 'sub' });
  const result = h('div', { class: 'dry-run-result', testid: 'dry-run-result', 'aria-live': 'polite' });
  const form = buildForm({
    testid: 'dry-run-form',
    createText: 'Dry run',
    fields: [
      { key: 'channel_id', label: 'Channel', type: 'select', required: true, hint: 'the number the message arrives on', options: () => options('channels', (c) => c.display_phone_number) },
      { key: 'contact_phone', label: 'Contact phone', hint: 'empty: a customer WaOS has not seen' },
      { key: 'message.text', label: 'Text', hint: 'what the customer writes' },
      { key: 'message.kind', label: 'Kind', type: 'select', default: 'text', options: () => MESSAGE_KINDS.map((k) => [k, k]) },
      { key: 'message.button_payload', label: 'Button payload', hint: 'the id of a tapped button or list row' },
      { key: 'tags', label: 'Tags', type: 'list', hint: "the conversation's tags, comma separated" },
    ],
    async submit(body) {
      if (!rule) throw new FieldProblem(null, 'Save the rule first: the dry run tests the saved rule.');
      result.replaceChildren(h('p', { class: 'sub' }, 'Running…'));
      delete result.dataset.matched;
      try {
        render(await api('POST', wsPath(`automations/${enc(rule.id)}/test`), body));
      } catch (e) {
        result.replaceChildren();
        throw e;
      }
    },
  });

  function render(run) {
    const conditions = run.conditions || [];
    const actions = run.actions || [];
    result.dataset.matched = String(Boolean(run.matched));
    result.replaceChildren(
      h('p', { class: `verdict ${run.matched ? 'matched' : 'unmatched'}` }, run.matched ? 'Matched' : 'Not matched'),
      h('h4', {}, 'Conditions'),
      conditions.length
        ? h('ul', { class: 'trace' }, conditions.map((c) => h('li', { class: c.result ? 'pass' : 'fail' },
          `${c.field} ${c.op}${c.value == null ? '' : ` ${JSON.stringify(c.value)}`}: ${c.result}`)))
        : h('p', { class: 'sub' }, 'No conditions: always true.'),
      h('h4', {}, 'Actions it would run'),
      actions.length
        ? h('ol', { class: 'trace' }, actions.map((a) => h('li', {}, describeAction(a))))
        : h('p', { class: 'sub' }, run.matched ? 'None.' : 'None: the rule does not match.'),
    );
  }

  function setRule(saved) {
    rule = saved;
    form.button.disabled = !rule;
    note.textContent = rule
      ? `Tests the saved rule "${rule.name}" against a sample message, changing nothing. Save edits first.`
      : 'Save the rule first: the dry run tests the saved rule.';
    result.replaceChildren();
    delete result.dataset.matched;
  }
  setRule(null);

  return { node: h('div', { class: 'card dry-run', testid: 'dry-run' }, h('h2', {}, 'Dry run'), note, form.node, result), form, setRule };
}

function automationsSection() {
  const dry = dryRunPanel();
  const trigger = (a) => {
    const t = a.trigger || {};
    return t.after_secs != null ? `${t.event} after ${t.after_secs} s` : t.event || '';
  };
  return crudSection({
    id: 'automations', title: 'Automations', noun: 'automation', path: 'automations', deletable: true, afterCreate: 'edit',
    needs: ['teams', 'agents', 'policies', 'channels'],
    fields: [
      { key: 'name', label: 'Name', required: true },
      { key: 'trigger.event', field: 'trigger', label: 'Trigger', type: 'select', default: 'message_received', options: () => TRIGGERS.map((t) => [t, t]) },
      {
        key: 'trigger.after_secs', label: 'After secs', type: 'number', required: true, hint: 'seconds of silence before it fires',
        showIf: (form) => TIMERS.has(form.value('trigger.event')),
      },
      { key: 'active', label: 'Active', type: 'checkbox', default: true, hint: 'enabled: runs on its events' },
      { key: 'stop_after', label: 'Stop after', type: 'checkbox', hint: 'when it matches, later rules do not run' },
      { key: 'position', label: 'Position', type: 'number', hint: 'rules run in ascending position; empty: after the others' },
      conditionsEditor(),
      actionsEditor(),
    ],
    columns: [
      ['Position', (a) => String(a.position)],
      ['Name', (a) => a.name],
      ['Trigger', trigger],
      ['Active', (a) => yesNo(a.active)],
      ['Stop after', (a) => yesNo(a.stop_after)],
    ],
    beside: dry.node,
    onMode: (form) => dry.setRule(form.mode === 'edit' ? form.item : null),
    onShow: () => dry.form.refresh(),
  });
}

// ---- Canned replies --------------------------------------------------------------------------

function cannedSection() {
  return crudSection({
    id: 'canned-replies', title: 'Canned replies', noun: 'canned reply', path: 'canned-replies', needs: ['teams'], deletable: true,
    fields: [
      { key: 'shortcut', label: 'Shortcut', required: true, hint: 'letters, digits, - and _; agents type /shortcut' },
      { key: 'text', label: 'Text', type: 'textarea', required: true, hint: 'placeholders: {{contact.name}}, {{contact.phone}}, {{agent.name}}, {{team.name}}' },
      { key: 'team_id', label: 'Team', type: 'select', hint: 'who may use it', options: () => [['', 'Whole workspace'], ...options('teams')] },
    ],
    columns: [
      ['Shortcut', (c) => `/${c.shortcut}`],
      ['Text', (c) => h('span', { class: 'clip' }, c.text)],
      ['Team', (c) => (c.team_id ? nameOf('teams', c.team_id) : 'Whole workspace')],
    ],
  });
}

// ---- Retention -------------------------------------------------------------------------------

function showWorkspace(workspace) {
  $('workspace-name').textContent = workspace?.name || '';
}

function retentionSection() {
  const days = (key, label) => ({ key: `retention.${key}`, label, type: 'number', hint: 'empty: keep for ever', attrs: { min: 1, max: 36500 } });
  const form = buildForm({
    testid: 'retention-form',
    fields: [days('message_days', 'Message days'), days('media_days', 'Media days'), days('audit_days', 'Audit days')],
    async submit(body) {
      const workspace = await api('PATCH', wsPath(), body);
      form.load(workspace);
      showWorkspace(workspace);
      toast('Retention saved.');
    },
  });
  form.setMode('edit');
  const node = sectionNode('retention', 'Retention', h('div', { class: 'admin-grid single' },
    h('div', { class: 'card form-card' }, h('h2', {}, 'How long data is kept'),
      h('p', { class: 'sub' }, 'Messages, media files and audit events older than this many days are deleted. Empty: kept for ever.'),
      form.node)));
  return {
    id: 'retention',
    node,
    async show() {
      try {
        const workspace = await api('GET', wsPath());
        form.load(workspace);
        showWorkspace(workspace);
      } catch (e) {
        if (me) toast(`Retention: ${e.message}`, 'error');
      }
    },
    reset() { form.reset(); form.setMode('edit'); },
  };
}

// ---- Data requests ---------------------------------------------------------------------------

const REQUEST_KINDS = ['access', 'export', 'correction', 'restriction', 'objection', 'erasure'];
const HAS_EXPORT = new Set(['access', 'export']);

function dataRequestsSection() {
  const contacts = new Map(); // contact id -> contact (null: could not be read)
  let chosen = null;
  let items = [];
  let cursor = null;

  // The contact is found with a search inside the request form; Enter in it searches.
  const query = h('input', { type: 'search', 'data-field': 'contact_id', autocomplete: 'off', testid: 'contact-search' });
  const searchButton = h('button', { type: 'button', class: 'small' }, 'Search');
  const results = h('ul', { class: 'list contact-results', testid: 'contact-results' });
  const chosenText = h('p', { class: 'chosen', testid: 'chosen-contact' });
  const picker = h('div', { class: 'contact-picker' },
    labelled('Contact', query, 'search by the start of a name or number, then Choose'),
    h('div', { class: 'row-tools' }, searchButton), results, chosenText);

  function choose(contact) {
    chosen = contact;
    if (contact) contacts.set(contact.id, contact);
    chosenText.textContent = contact
      ? `Chosen: ${contactName(contact)}${contact.phone ? ` (+${contact.phone})` : ''}`
      : 'No contact chosen yet.';
    results.replaceChildren();
  }

  async function search() {
    const text = query.value.trim();
    if (!text) return;
    try {
      const found = listOf(await api('GET', `/api/v1/contacts?q=${enc(text)}`));
      results.replaceChildren(...(found.length ? found.map((c) => h('li', { class: 'row contact-result', testid: 'contact-result' },
        h('span', {}, contactName(c), ' ', h('span', { class: 'sub' }, c.phone ? `+${c.phone}` : '')),
        rowButton('Choose', async () => { choose(c); form.field('kind').control.focus(); })))
        : [h('li', { class: 'empty' }, 'No contact starts with that.')]));
    } catch (e) {
      toast(`Contacts: ${e.message}`, 'error');
    }
  }
  searchButton.addEventListener('click', search);
  query.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Enter') return;
    ev.preventDefault(); // searches instead of submitting the request
    search();
  });

  const kept = (raw) => (raw.trim() ? raw.trim() : OMIT); // an empty change is no change
  const form = buildForm({
    testid: 'data-requests-form',
    fields: [
      {
        type: 'custom', key: 'contact_id', node: picker,
        read() {
          if (!chosen) throw new FieldProblem('contact_id', 'Choose a contact first: search, then Choose.');
          return chosen.id;
        },
        write() {},
        reset() { query.value = ''; choose(null); },
      },
      { key: 'kind', label: 'Kind', type: 'select', required: true, default: 'access', hint: 'erasure deletes the contact\'s messages and media for good', options: () => REQUEST_KINDS.map((k) => [k, k]) },
      {
        type: 'group', legend: 'Changes', note: 'A correction changes the name and/or the username. Empty: unchanged.',
        showIf: (f) => f.value('kind') === 'correction',
        fields: [{ key: 'changes.name', label: 'Name', parse: kept }, { key: 'changes.username', label: 'Username', parse: kept }],
      },
    ],
    finish(body) {
      if (body.kind === 'correction' && !body.changes) {
        throw new FieldProblems([new FieldProblem('changes.name', 'Give a new name or username.')]);
      }
    },
    async submit(body) {
      if (body.kind === 'erasure'
        && !window.confirm(`Erase ${chosenText.textContent.replace(/^Chosen: /, '')}? Their messages and media are deleted for good.`)) return;
      const created = await api('POST', '/api/v1/data-requests', body);
      toast(`Data request created: ${created.kind}, ${created.status}.`);
      form.reset();
      await reload();
    },
  });

  async function download(request) {
    const blob = await apiBlob(`/api/v1/data-requests/${enc(request.id)}/export`);
    const url = URL.createObjectURL(blob);
    const link = h('a', { href: url, download: `waos-export-${request.id}.json`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
  }

  const contactCell = (r) => {
    const c = contacts.get(r.contact_id);
    return c ? contactName(c) : shortId(r.contact_id);
  };
  const table = listTable({
    testid: 'data-requests-list',
    columns: [['Kind', (r) => r.kind], ['Status', (r) => r.status], ['Contact', contactCell], ['Due', (r) => when(r.due_at)], ['Created', (r) => when(r.created_at)]],
    buttons: (r) => (HAS_EXPORT.has(r.kind) ? [rowButton('Download export', () => download(r))] : []),
  });
  const more = h('button', { type: 'button', class: 'small', hidden: true }, 'More');

  // The list names contacts by id: read the unknown ones once.
  async function nameContacts() {
    const unknown = [...new Set(items.map((r) => r.contact_id))].filter((id) => !contacts.has(id));
    await Promise.all(unknown.map((id) => api('GET', `/api/v1/contacts/${enc(id)}`)
      .then((d) => contacts.set(id, d.contact || d)).catch(() => contacts.set(id, null))));
    if (unknown.length) table.render(items);
  }

  async function page(after) {
    const answer = await api('GET', `/api/v1/data-requests?limit=100${after ? `&cursor=${enc(after)}` : ''}`);
    items = after ? [...items, ...listOf(answer)] : listOf(answer);
    cursor = answer?.next_cursor || null;
    more.hidden = !cursor;
    table.render(items);
    nameContacts();
  }
  const reload = () => page(null);
  more.addEventListener('click', () => page(cursor).catch((e) => toast(`Data requests: ${e.message}`, 'error')));

  const node = sectionNode('data-requests', 'Data requests', h('div', { class: 'admin-grid' },
    h('div', { class: 'card list-card' }, h('h2', {}, 'Requests'), table.node, more),
    h('div', { class: 'card form-card' }, h('h2', { class: 'form-title' }, 'New data request'), form.node)));

  return {
    id: 'data-requests',
    node,
    async show() {
      form.refresh();
      try { await reload(); } catch (e) { if (me) toast(`Data requests: ${e.message}`, 'error'); }
    },
    reset() {
      items = [];
      cursor = null;
      contacts.clear();
      more.hidden = true;
      table.render([]);
      form.reset();
    },
  };
}

// ---- API tokens ------------------------------------------------------------------------------

function tokensSection() {
  const value = h('code', { class: 'token-value', testid: 'new-token' });
  const copy = h('button', { type: 'button', class: 'small' }, 'Copy');
  const done = h('button', { type: 'button', class: 'small' }, 'Done');
  const box = h('div', { class: 'token-once', testid: 'new-token-box', hidden: true },
    h('p', {}, h('strong', {}, 'The new token. '), 'Copy it now: it will not be shown again.'),
    value, h('div', { class: 'row-tools' }, copy, done));
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(value.textContent);
      toast('Token copied.');
    } catch {
      // No clipboard (plain HTTP): select it for a manual copy.
      window.getSelection()?.selectAllChildren(value);
    }
  });
  const hide = () => { value.textContent = ''; box.hidden = true; };
  done.addEventListener('click', hide);

  const section = crudSection({
    id: 'api-tokens', title: 'API tokens', noun: 'API token', path: 'api-tokens', needs: ['agents'],
    editable: false, deletable: true, deleteText: 'Revoke',
    fields: [
      { key: 'name', label: 'Name', required: true, hint: 'what it is for, like "CRM sync"' },
      { key: 'role', label: 'Role', type: 'select', required: true, default: 'supervisor', options: () => [['supervisor', 'supervisor'], ['admin', 'admin']] },
      { key: 'expires_at', label: 'Expires at', type: 'datetime', hint: 'your local time; empty: until revoked' },
    ],
    columns: [
      ['Name', (t) => t.name],
      ['Role', (t) => t.role],
      ['Created', (t) => when(t.created_at)],
      ['Expires', (t) => (t.expires_at ? when(t.expires_at) : 'Never')],
      ['Created by', (t) => (t.created_by ? nameOf('agents', t.created_by) : 'the installation')],
    ],
    below: [box],
    onCreated(created) {
      value.textContent = created.token;
      box.hidden = false;
    },
  });
  const reset = section.reset;
  section.reset = () => { hide(); reset(); };
  return section;
}

// ---- page ------------------------------------------------------------------------------------

const sections = new Map();
for (const section of [teamsSection(), agentsSection(), channelsSection(), calendarsSection(), policiesSection(),
  automationsSection(), cannedSection(), retentionSection(), dataRequestsSection(), tokensSection()]) {
  sections.set(section.id, section);
  $('sections').append(section.node);
}

/** Shows the section the hash names (default Teams); `focus` moves focus to its heading. */
function route(focus = false) {
  if (!me || me.role !== 'admin') return;
  const wanted = location.hash.slice(1);
  const name = sections.has(wanted) ? wanted : 'teams';
  for (const [id, section] of sections) section.node.hidden = id !== name;
  for (const link of $('admin-nav').querySelectorAll('a[href^="#"]')) {
    if (link.getAttribute('href') === `#${name}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const section = sections.get(name);
  section.show();
  if (focus) section.node.querySelector('h1').focus();
}

function start(session) {
  me = session;
  const admin = session.role === 'admin';
  $('denied').hidden = admin;
  $('admin-main').hidden = !admin;
  if (!admin) {
    loadDirectory()
      .then((d) => { if (me === session) $('me-name').textContent = d.agents.get(session.agent_id)?.name || session.role; })
      .catch(() => {});
    return;
  }
  route();
  api('GET', wsPath()).then((w) => { if (me === session) showWorkspace(w); }).catch(() => {});
  loadRef('agents')
    .then(() => { if (me === session) $('me-name').textContent = nameOf('agents', session.agent_id); })
    .catch(() => {});
}

function stop() {
  me = null;
  closePasswordDialog();
  for (const kind of Object.keys(cache)) cache[kind] = [];
  for (const section of sections.values()) {
    section.reset();
    section.node.hidden = true;
  }
  showWorkspace(null);
  $('me-name').textContent = '';
  $('denied').hidden = true;
  $('admin-main').hidden = true;
  showSetup(false);
}

// ---- first run -------------------------------------------------------------------------------

const setupForm = $('setup-form');

/** Swaps the sign-in form for the setup form (or back). */
function showSetup(on, focus = false) {
  $('login-form').hidden = on;
  setupForm.hidden = !on;
  if (on) clearFormErrors(setupForm);
  else $('setup-token').value = '';
  if (focus) (on ? $('setup-token') : $('login-email')).focus();
}

$('show-setup').addEventListener('click', (ev) => { ev.preventDefault(); showSetup(true, true); });
$('show-login').addEventListener('click', (ev) => { ev.preventDefault(); showSetup(false, true); });

setupForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  clearFormErrors(setupForm);
  const token = $('setup-token').value.trim();
  const body = {
    workspace: { name: $('setup-workspace-name').value.trim() },
    admin: {
      name: $('setup-admin-name').value.trim(),
      email: $('setup-admin-email').value.trim(),
      password: $('setup-admin-password').value,
    },
  };
  const missing = [
    [token, 'token', 'Enter the admin token.'],
    [body.workspace.name, 'workspace.name', "Enter the workspace's name."],
    [body.admin.name, 'admin.name', "Enter the admin's name."],
    [body.admin.email, 'admin.email', "Enter the admin's email."],
    [body.admin.password, 'admin.password', 'Choose a password.'],
  ].filter(([value]) => !value).map(([, field, message]) => ({ field, message }));
  if (missing.length) return showFormErrors(setupForm, missing);

  const button = setupForm.querySelector('button[type=submit]');
  button.disabled = true;
  // The installation's master key stays in the page no longer than this one request.
  $('setup-token').value = '';
  try {
    await api('POST', '/api/v1/setup', body, { token });
  } catch (e) {
    button.disabled = false;
    if (e.status === 401 || e.status === 403) {
      return showFormErrors(setupForm, { field: 'token', message: `The admin token was refused (${e.message}).` });
    }
    return showFormErrors(setupForm, e);
  }
  toast('Workspace created. Signing in…');
  try {
    // Entering the app is bootAuth's: signIn tells it.
    await signIn(body.admin.email, body.admin.password);
    setupForm.reset();
  } catch (e) {
    showSetup(false);
    $('login-email').value = body.admin.email;
    const error = $('login-error');
    error.textContent = `The workspace exists; sign in: ${e.message}`;
    error.hidden = false;
    $('login-password').focus();
  } finally {
    button.disabled = false;
  }
  return undefined;
});

/** With nobody signed in and no workspace yet, the page opens on the setup form. */
async function checkSetup() {
  if (getSession()) return;
  try {
    const answer = await api('GET', '/api/v1/setup', undefined, { token: null });
    if (answer?.needs_setup && !getSession()) showSetup(true, true);
  } catch {
    // An older server, or unreachable: the sign-in form stays.
  }
}

bootAuth({ onReady: start, onGone: stop });
window.addEventListener('hashchange', () => route(true));
$('password-open').addEventListener('click', openPasswordDialog);
checkSetup();
