// Agent console: offers, my conversations, the chat, and the side panel for the open one.
import {
  api, apiBlob, bootAuth, closePasswordDialog, getSession, contactName, fmtDuration, fmtTime, h, LiveSocket,
  loadDirectory, newId, openPasswordDialog, showConnection, toast,
} from '/assets/api.js';
import { cannedPicker, contactHistory, queuePanel, searchPanel } from '/assets/tools.js';

const $ = (id) => document.getElementById(id);
const DAY_MS = 24 * 3600 * 1000;
const MEDIA_KINDS = new Set(['image', 'sticker', 'audio', 'video', 'document']);
const TICKS = { queued: '⏱', accepted: '✓', sent: '✓', delivered: '✓✓', read: '✓✓', played: '✓✓', failed: '✗', received: '' };
// Statuses never move backwards, even if a REST reload races a live `status` frame. Their order
// is the server's: every `hello` carries it (`delivery_statuses`, lowest first).
let RANK = {};

let me = null;                // the login answer
let dir = { teams: new Map(), agents: new Map() };
let sock = null;
let presence = 'away';
let helloGen = 0;             // ignores history loads of an older `hello`
const offers = new Map();     // conversation_id -> offer
const convs = new Map();      // conversation_id -> conversation (mine)
const history = new Map();    // conversation_id -> messages, oldest first (once loaded)
const previews = new Map();   // conversation_id -> last message
const unread = new Map();     // conversation_id -> count
const known = new Set();      // message ids already counted, to dedupe frames
const pending = new Map();    // client_id -> conversation_id
const accepting = new Set();  // offers with an accept in flight
const templates = new Map();  // conversation_id -> approved templates
const media = new Map();      // message id -> object URL
let seen = {};                // conversation_id -> last seen message id (localStorage)
let selected = sessionStorage.getItem('waos.selected');
let replyMode = null;         // 'text' | 'template' as last rendered, to flip when the window closes
let replyKey = '';            // conversation + mode of the reply box on screen (rebuild only on change)
let queue = null;             // the waiting conversations of my teams (tools.js)
let ticks = 0;

// Drafts survive reconnects and reloads of the tab.
const drafts = JSON.parse(sessionStorage.getItem('waos.drafts') || '{}');
const saveDrafts = () => sessionStorage.setItem('waos.drafts', JSON.stringify(drafts));
const seenKey = () => `waos.seen.${me.agent_id}`;

const windowLeft = (c) => (c && c.window_expires_at ? Date.parse(c.window_expires_at) - Date.now() : 0);
const agentName = (id) => dir.agents.get(id)?.name || 'Agent';
const teamName = (id) => dir.teams.get(id)?.name || 'Team';
const visible = () => document.visibilityState === 'visible';
const send = (frame) => sock && sock.send(frame);

function sendOrWarn(frame) {
  if (send(frame)) return true;
  toast('Not connected — try again in a moment.', 'error');
  return false;
}

// ---- startup / teardown ----------------------------------------------------------------------

bootAuth({ onReady: start, onGone: stop });
setInterval(tick, 1000);
document.addEventListener('visibilitychange', () => { if (visible() && selected) openSeen(selected); });
$('presence').addEventListener('click', () => {
  const next = presence === 'online' ? 'away' : 'online';
  if (sendOrWarn({ type: 'presence', status: next })) setPresence(next);
});
// Changing one's password ends the other sessions; this one stays (its socket reconnects).
$('password-open').addEventListener('click', openPasswordDialog);

async function start(session) {
  me = session;
  seen = JSON.parse(localStorage.getItem(seenKey()) || '{}');
  try {
    dir = await loadDirectory();
  } catch (e) {
    toast(`Directory: ${e.message}`, 'error');
  }
  if (!me) return; // logged out while loading
  $('me-name').textContent = dir.agents.get(me.agent_id)?.name || me.role;
  queue = queuePanel(sendOrWarn);
  $('queue-box').replaceChildren(...queue.node);
  $('search-box').replaceChildren(...searchPanel());
  sock = new LiveSocket('/ws/agent', { onFrame, onState: showConnection });
  sock.start();
  renderAll();
}

function stop() {
  closePasswordDialog();
  if (sock) sock.stop();
  sock = null;
  me = null;
  for (const url of media.values()) URL.revokeObjectURL(url);
  for (const c of [offers, convs, history, previews, unread, pending, templates, media, known, accepting]) c.clear();
  for (const k of Object.keys(drafts)) delete drafts[k]; // the next person on this tab must not see them
  saveDrafts();
  [selected, replyKey] = [null, ''];
  sessionStorage.removeItem('waos.selected');
  queue = null;
  for (const id of ['offers', 'convs', 'chat-head', 'messages', 'reply', 'side', 'me-name', 'queue-box', 'search-box']) $(id).replaceChildren();
}

// ---- frames ------------------------------------------------------------------------------

function onFrame(f) {
  // Whatever moves a conversation may move the queue.
  if (queue && ['hello', 'offer', 'offer_withdrawn', 'assigned', 'unassigned'].includes(f.type)) queue.refresh();
  switch (f.type) {
    case 'hello': return onHello(f);
    case 'offer':
      offers.set(f.conversation_id, f);
      renderOffers();
      return toast(`New offer: ${contactName(f.contact)}`);
    case 'offer_withdrawn': {
      // Only news when the agent did not cause it (decline removes it at once, accept is in flight).
      const news = offers.has(f.conversation_id) && !accepting.has(f.conversation_id);
      offers.delete(f.conversation_id);
      accepting.delete(f.conversation_id);
      renderOffers();
      return news ? toast(`Offer withdrawn: ${f.reason}`) : undefined;
    }
    case 'assigned': return onAssigned(f);
    case 'unassigned': return onUnassigned(f);
    case 'message': return onMessage(f.conversation_id, f.message);
    case 'presence': return setPresence(f.status);
    case 'status': return onStatus(f);
    case 'sent': return onSent(f);
    case 'sla': return onSla(f);
    case 'sla_update': return onSlaUpdate(f);
    case 'error': return onError(f);
    default: return undefined;
  }
}

// `hello` is the whole truth after every (re)connect: replace state, keep drafts and selection.
async function onHello(f) {
  const gen = ++helloGen;
  RANK = Object.fromEntries((f.delivery_statuses || []).map((status, rank) => [status, rank]));
  setPresence(f.presence);
  offers.clear();
  accepting.clear();
  for (const o of f.offers || []) offers.set(o.conversation_id, o);
  convs.clear();
  for (const c of f.conversations || []) addConv(c);
  for (const cid of [...history.keys()]) if (!convs.has(cid)) history.delete(cid);
  if (selected && !convs.has(selected)) {
    selected = null;
    sessionStorage.removeItem('waos.selected');
  }
  renderAll();
  return onHelloHistory(gen);
}

async function onHelloHistory(gen) {
  // Reload every history: catches messages missed while offline and yields unread counts.
  await Promise.all([...convs.keys()].map((cid) => loadHistory(cid).catch(() => {})));
  if (gen !== helloGen) return;
  for (const cid of convs.keys()) unread.set(cid, countUnread(cid));
  if (selected) {
    renderChat();
    openSeen(selected);
  }
  renderList();
}

function addConv(c) {
  c.tags = c.tags || [];
  convs.set(c.id, c);
}

function onAssigned(f) {
  const c = f.conversation;
  addConv(c);
  offers.delete(c.id);
  accepting.delete(c.id);
  renderOffers();
  if (f.reason === 'transfer') toast(`Transferred to you: ${contactName(c.contact)}`);
  if (!selected) return select(c.id); // nothing open: show the new one straight away
  renderList();
  if (c.id === selected) renderAll(); // e.g. re-assigned after a reconnect race
  return loadHistory(c.id).then(() => {
    unread.set(c.id, countUnread(c.id));
    renderList();
  }).catch(() => {});
}

function onUnassigned(f) {
  const c = convs.get(f.conversation_id);
  convs.delete(f.conversation_id);
  history.delete(f.conversation_id);
  delete drafts[f.conversation_id];
  saveDrafts();
  if (c) toast(`${contactName(c.contact)}: ${f.reason || 'no longer yours'}`);
  if (selected === f.conversation_id) select(null);
  else renderList();
}

function onMessage(cid, m) {
  const fresh = !known.has(m.id);
  known.add(m.id);
  previews.set(cid, m);
  const offer = offers.get(cid);
  if (offer) {
    offer.last_message = m;
    renderOffers();
  }
  const c = convs.get(cid);
  if (!c) return;
  if (m.direction === 'in') {
    // An inbound message reopens the 24-hour window; the server does not re-send the conversation.
    c.last_inbound_at = m.timestamp;
    const until = new Date(Date.parse(m.timestamp) + DAY_MS).toISOString();
    if (!c.window_expires_at || until > c.window_expires_at) c.window_expires_at = until;
  }
  const list = history.get(cid);
  if (list) {
    const old = list.find((x) => x.id === m.id);
    if (old) Object.assign(old, m, { status: higher(old.status, m.status) });
    else list.push(m);
    if (cid === selected) {
      if (old) refreshMessage(old);
      else appendMessage(m);
    }
  }
  if (cid === selected && visible()) openSeen(cid);
  else if (fresh && m.direction === 'in') unread.set(cid, (unread.get(cid) || 0) + 1);
  renderList();
}

const higher = (a, b) => ((RANK[b] ?? 0) > (RANK[a] ?? 0) ? b : a);

// ---- SLA -----------------------------------------------------------------------------------

const SLA_METRICS = [['first_response', 'First response'], ['next_response', 'Next response'], ['resolution', 'Resolution']];
const warned = new Map(); // conversation_id -> metric warned of (from `sla` frames)

/** The nearest open deadline of a conversation, or null. */
function nextDeadline(c) {
  const due = SLA_METRICS
    .map(([metric, label]) => ({ metric, label, at: c.sla?.[`${metric}_due_at`] }))
    .filter((d) => d.at && !(c.sla.breached || []).includes(d.metric));
  return due.sort((a, b) => a.at.localeCompare(b.at))[0] || null;
}

function slaState(c) {
  if (!c.sla) return null;
  const next = nextDeadline(c);
  if ((c.sla.breached || []).length) {
    const names = SLA_METRICS.filter(([m]) => c.sla.breached.includes(m)).map(([, l]) => l.toLowerCase());
    return { cls: 'breached', text: `SLA breached: ${names.join(', ')}` };
  }
  if (!next) return null;
  const left = Date.parse(next.at) - Date.now();
  const risky = warned.get(c.id) === next.metric;
  return { cls: risky ? 'warning' : '', text: `${next.label} ${left > 0 ? `in ${fmtDuration(left)}` : 'due now'}` };
}

function slaBadge(c) {
  const state = slaState(c);
  if (!state) return null;
  return h('span', { class: `badge sla ${state.cls}`, testid: 'sla', 'data-sla': c.id, 'data-sla-state': state.cls || 'running' }, state.text);
}

function onSla(f) {
  const c = convs.get(f.conversation_id);
  if (!c) return;
  c.sla = c.sla || { breached: [], met: [] };
  if (f.state === 'breached') {
    c.sla.breached = [...new Set([...(c.sla.breached || []), f.metric])];
    if (warned.get(c.id) === f.metric) warned.delete(c.id);
    toast(`${contactName(c.contact)}: ${f.metric.replace('_', ' ')} SLA breached`, 'error');
  } else {
    warned.set(c.id, f.metric);
  }
  c.sla[`${f.metric}_due_at`] = f.due_at;
  renderList();
  if (c.id === selected) renderChatHead();
}

/** Replies and customer messages move the clocks on the server, which sends them over. */
function onSlaUpdate(f) {
  const c = convs.get(f.conversation_id);
  if (!c) return;
  c.sla = f.sla;
  const next = c.sla && nextDeadline(c);
  if (warned.has(c.id) && (!next || next.metric !== warned.get(c.id))) warned.delete(c.id);
  renderList();
  if (c.id === selected) renderChatHead();
}

function onStatus(f) {
  const m = (history.get(f.conversation_id) || []).find((x) => x.id === f.message_id);
  if (!m) return;
  if (higher(m.status, f.status) !== m.status) {
    m.status = f.status;
    if (f.error) m.error = f.error;
    refreshMessage(m);
  }
}

function onSent(f) {
  const cid = pending.get(f.client_id);
  pending.delete(f.client_id);
  const list = history.get(cid);
  const m = list && list.find((x) => x.client_id === f.client_id);
  if (!m) return;
  known.add(f.message_id);
  const echoed = list.find((x) => x.id === f.message_id);
  if (echoed) {
    // The `message` echo came first: keep the stored one, drop the optimistic copy.
    list.splice(list.indexOf(m), 1);
    findMessageNode(m)?.remove();
    return;
  }
  m.id = f.message_id;
  m.pending = false;
  refreshMessage(m);
}

function onError(f) {
  toast(f.message || f.code, 'error');
  if (f.conversation_id && accepting.delete(f.conversation_id)) renderOffers();
  let cid = f.conversation_id;
  if (f.client_id && pending.has(f.client_id)) {
    cid = pending.get(f.client_id);
    pending.delete(f.client_id);
    const m = (history.get(cid) || []).find((x) => x.client_id === f.client_id);
    if (m) {
      m.status = 'failed';
      m.pending = false;
      m.error = { message: f.message, code: f.code };
      refreshMessage(m);
    }
  }
  const c = convs.get(cid);
  if (f.code === 'window_closed' && c) {
    c.window_expires_at = new Date().toISOString();
    if (cid === selected) {
      renderReply();
      renderChatHead();
    }
    renderList();
  }
}

// ---- history / unread --------------------------------------------------------------------

async function loadHistory(cid) {
  const page = await api('GET', `/api/v1/conversations/${encodeURIComponent(cid)}/messages?limit=500`);
  const items = page.items || [];
  // Keep replies still waiting for their `sent`, which REST does not know yet.
  const ids = new Set(items.map((m) => m.id));
  const mine = (history.get(cid) || []).filter((m) => m.client_id && !ids.has(m.id));
  const list = items.concat(mine);
  history.set(cid, list);
  for (const m of items) known.add(m.id);
  if (list.length) previews.set(cid, list[list.length - 1]);
  return list;
}

function countUnread(cid) {
  const list = history.get(cid) || [];
  const at = seen[cid] ? list.findIndex((m) => m.id === seen[cid]) : -1;
  return list.slice(at + 1).filter((m) => m.direction === 'in').length;
}

/** The agent is looking at cid: remember the last message as seen and tell the server. */
function openSeen(cid) {
  if (!visible()) return;
  const list = (history.get(cid) || []).filter((m) => m.id);
  if (list.length) {
    seen[cid] = list[list.length - 1].id;
    localStorage.setItem(seenKey(), JSON.stringify(seen));
  }
  unread.set(cid, 0);
  send({ type: 'open', conversation_id: cid });
  renderList();
}

// ---- selection ---------------------------------------------------------------------------

async function select(cid) {
  selected = cid;
  if (cid) sessionStorage.setItem('waos.selected', cid);
  else sessionStorage.removeItem('waos.selected');
  renderList();
  renderChatHead();
  renderReply();
  renderSide();
  if (!cid) return renderChat();
  if (!history.has(cid)) {
    $('messages').replaceChildren(h('p', { class: 'empty' }, 'Loading…'));
    try {
      await loadHistory(cid);
    } catch (e) {
      toast(e.message, 'error');
    }
    if (selected !== cid) return undefined;
  }
  renderChat();
  openSeen(cid);
  return $('reply-input')?.focus();
}

// ---- rendering: left column --------------------------------------------------------------

function renderAll() {
  for (const render of [renderOffers, renderList, renderChatHead, renderChat, renderReply, renderSide]) render();
}

function setPresence(status) {
  presence = status;
  const button = $('presence');
  button.textContent = status;
  button.className = `presence ${status}`;
}

function preview(m) {
  if (!m) return 'No messages yet';
  const who = m.direction === 'out' ? (m.automated ? 'Automated: ' : 'You: ') : '';
  return `${who}${m.text || `[${m.kind}]`}`;
}

function renderOffers() {
  const list = [...offers.values()].sort((a, b) => a.expires_at.localeCompare(b.expires_at));
  $('offer-count').textContent = list.length || '';
  $('offers').replaceChildren(...(list.length ? list.map((o) => {
    const busy = accepting.has(o.conversation_id);
    return h('li', { class: 'offer', testid: 'offer', 'data-conversation-id': o.conversation_id },
      h('div', { class: 'row' },
        h('strong', { class: 'name' }, contactName(o.contact)),
        h('span', { class: 'countdown', testid: 'offer-countdown', 'data-expires': o.expires_at }, countdown(o.expires_at))),
      h('div', { class: 'sub' }, o.contact?.phone || ''),
      h('div', { class: 'preview' }, preview(o.last_message)),
      h('div', { class: 'actions' },
        h('button', { class: 'primary', testid: 'offer-accept', disabled: busy, onclick: () => accept(o.conversation_id) }, busy ? 'Accepting…' : 'Accept'),
        h('button', { testid: 'offer-decline', disabled: busy, onclick: () => decline(o.conversation_id) }, 'Decline')));
  }) : [h('li', { class: 'empty' }, 'No offers right now')]));
}

function accept(cid) {
  if (!sendOrWarn({ type: 'accept', conversation_id: cid })) return;
  accepting.add(cid);
  renderOffers();
}

function decline(cid) {
  if (!sendOrWarn({ type: 'decline', conversation_id: cid })) return;
  offers.delete(cid); // the server withdraws it anyway; no reason to keep it on screen
  renderOffers();
}

const countdown = (iso) => (Date.parse(iso) > Date.now() ? fmtDuration(Date.parse(iso) - Date.now()) : 'expired');
const windowLabel = (c) => (windowLeft(c) > 0 ? fmtDuration(windowLeft(c)) : 'window closed');

function renderList() {
  const activity = (c) => previews.get(c.id)?.timestamp || c.updated_at || '';
  const list = [...convs.values()].sort((a, b) => activity(b).localeCompare(activity(a)));
  $('conv-count').textContent = list.length || '';
  $('convs').replaceChildren(...(list.length ? list.map((c) => {
    const n = unread.get(c.id) || 0;
    return h('li', {
      class: `conv-item${c.id === selected ? ' active' : ''}${n ? ' has-unread' : ''}`,
      testid: 'conversation-item', 'data-conversation-id': c.id, tabindex: 0,
      onclick: () => select(c.id),
      onkeydown: (ev) => { if (ev.key === 'Enter') select(c.id); },
    },
    h('div', { class: 'row' },
      h('strong', { class: 'name' }, contactName(c.contact)),
      n ? h('span', { class: 'badge unread', testid: 'unread' }, String(n)) : null),
    h('div', { class: 'preview' }, preview(previews.get(c.id))),
    h('div', { class: 'sub' },
      h('span', { class: `window${windowLeft(c) > 0 ? '' : ' closed'}`, 'data-window': c.id }, windowLabel(c)),
      slaBadge(c),
      ...c.tags.slice(0, 3).map((t) => h('span', { class: 'mini-tag' }, t))));
  }) : [h('li', { class: 'empty' }, 'No conversations assigned')]));
}

// ---- rendering: chat ---------------------------------------------------------------------

function renderChatHead() {
  const c = convs.get(selected);
  if (!c) return $('chat-head').replaceChildren();
  return $('chat-head').replaceChildren(
    h('div', {},
      h('strong', {}, contactName(c.contact)),
      h('span', { class: 'sub' }, ` ${c.contact?.phone || ''}`)),
    h('span', { class: 'badges' },
      c.within_hours === false ? h('span', { class: 'badge closed-hours', testid: 'outside-hours' }, 'Team closed') : null,
      slaBadge(c),
      h('span', { class: `badge window${windowLeft(c) > 0 ? '' : ' closed'}`, 'data-window': c.id }, windowLabel(c))));
}

function renderChat() {
  const box = $('messages');
  const list = history.get(selected);
  if (!selected) return box.replaceChildren(h('p', { class: 'empty big' }, 'Select a conversation or accept an offer.'));
  if (!list) return undefined;
  box.replaceChildren(...(list.length ? list.map(messageNode) : [h('p', { class: 'empty' }, 'No messages yet')]));
  box.scrollTop = box.scrollHeight;
  return undefined;
}

function appendMessage(m) {
  const box = $('messages');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  box.querySelector('.empty')?.remove();
  box.append(messageNode(m));
  if (atBottom || m.direction === 'out') box.scrollTop = box.scrollHeight;
}

function findMessageNode(m) {
  const box = $('messages');
  return (m.id && box.querySelector(`[data-message-id="${CSS.escape(m.id)}"]`))
    || (m.client_id && box.querySelector(`[data-client-id="${CSS.escape(m.client_id)}"]`));
}

function refreshMessage(m) {
  findMessageNode(m)?.replaceWith(messageNode(m));
}

function errorText(e) {
  if (!e) return '';
  if (typeof e === 'string') return e;
  const parts = [e.title, e.message !== e.title ? e.message : null, e.error_data?.details].filter(Boolean);
  return `${parts.join(': ') || 'Failed'}${e.code != null ? ` (code ${e.code})` : ''}`;
}

function messageNode(m) {
  const out = m.direction === 'out';
  const status = m.pending ? 'queued' : m.status;
  const showText = m.text || (MEDIA_KINDS.has(m.kind) ? '' : `[${m.kind}]`);
  return h('div', {
    class: `msg ${out ? 'out' : 'in'}${m.pending ? ' pending' : ''}${status === 'failed' ? ' failed' : ''}${m.automated ? ' automated' : ''}`,
    testid: 'message', 'data-message-id': m.id || null, 'data-client-id': m.client_id || null,
    'data-direction': out ? 'out' : 'in',
  },
  m.automated ? h('div', { class: 'msg-author', testid: 'message-automated' }, 'Automated reply') : null,
  MEDIA_KINDS.has(m.kind) ? mediaNode(m) : null,
  h('div', { class: 'msg-text', testid: 'message-text' }, showText),
  m.reaction ? h('span', { class: 'reaction', title: 'Customer reaction' }, m.reaction) : null,
  h('div', { class: 'msg-meta' },
    h('time', { datetime: m.timestamp }, fmtTime(m.timestamp)),
    h('span', { class: `tick ${status}`, testid: 'message-status', 'data-status': out ? status : 'received', title: out ? status : null },
      out ? TICKS[status] ?? '' : '')),
  status === 'failed' ? h('div', { class: 'msg-error' }, `✗ ${errorText(m.error)}`) : null);
}

// Media is fetched with the Bearer header; images show inline, the rest as a download link
// (the CSP's media-src falls back to 'self', so blob: audio/video cannot play inline).
function mediaNode(m) {
  const label = `📎 ${m.kind}`;
  const holder = h('div', { class: 'media' }, `${label} (loading…)`);
  const show = (url) => {
    const inline = m.kind === 'image' || m.kind === 'sticker';
    holder.replaceChildren(inline
      ? h('img', { src: url, alt: m.kind, class: m.kind })
      : h('a', { href: url, download: `${m.kind}-${m.id}` }, `${label} — download`));
  };
  if (!m.id || m.pending) holder.textContent = label;
  else if (media.has(m.id)) show(media.get(m.id));
  else {
    const cid = selected;
    apiBlob(`/api/v1/conversations/${encodeURIComponent(cid)}/messages/${encodeURIComponent(m.id)}/media`)
      .then((blob) => {
        const url = URL.createObjectURL(blob);
        media.set(m.id, url);
        show(url);
      })
      .catch((e) => {
        holder.replaceChildren(e.status === 404 ? `${label} (not downloaded yet) ` : `${label} (unavailable: ${e.message}) `,
          h('button', { class: 'link', onclick: () => holder.replaceWith(mediaNode(m)) }, 'retry'));
      });
  }
  return holder;
}

// ---- rendering: reply box ----------------------------------------------------------------

function renderReply() {
  const box = $('reply');
  const c = convs.get(selected);
  const mode = c ? (windowLeft(c) > 0 ? 'text' : 'template') : null;
  // Rebuilding on every resync would steal the focus and caret from the agent's typing.
  if (`${selected}/${mode}` === replyKey && box.firstChild) return undefined;
  replyKey = `${selected}/${mode}`;
  replyMode = mode;
  if (!c) return box.replaceChildren();
  return replyMode === 'text' ? renderTextReply(box, c) : renderTemplateReply(box, c);
}

function renderTextReply(box, c) {
  const input = h('textarea', {
    id: 'reply-input', testid: 'reply-input', rows: 3, placeholder: 'Type a reply — / for canned replies, Enter sends, Shift+Enter for a new line',
    oninput: () => { drafts[c.id] = input.value; saveDrafts(); },
  });
  // The canned replies' picker sees Enter first (it takes it while its list is open).
  const canned = cannedPicker(input, c.id);
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      sendText();
    }
  });
  input.value = drafts[c.id] || '';
  const sendText = () => {
    const text = input.value.trim();
    if (!text) return;
    const clientId = newId();
    if (!sendOrWarn({ type: 'send', conversation_id: c.id, client_id: clientId, text })) return;
    addPending(c.id, clientId, 'text', text);
    input.value = '';
    delete drafts[c.id];
    saveDrafts();
  };
  // Attach: the file goes to Meta through our server, then its media id is sent like a reply.
  const file = h('input', { type: 'file', class: 'hidden-file', testid: 'attach-input', onchange: () => sendFile() });
  const sendFile = async () => {
    const chosen = file.files && file.files[0];
    file.value = '';
    if (!chosen) return;
    const kind = mediaKindOf(chosen.type);
    try {
      const res = await fetch(`/api/v1/conversations/${encodeURIComponent(c.id)}/media?filename=${encodeURIComponent(chosen.name)}`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${getSession()?.token}`, 'Content-Type': chosen.type || 'application/octet-stream' },
        body: chosen,
      });
      const body = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error(body.error?.message || `upload failed (${res.status})`);
      const media = { kind, id: body.media_id };
      const caption = input.value.trim();
      if (caption && kind !== 'audio') { media.caption = caption; input.value = ''; delete drafts[c.id]; saveDrafts(); }
      if (kind === 'document') media.filename = chosen.name;
      const clientId = newId();
      if (!sendOrWarn({ type: 'send_media', conversation_id: c.id, client_id: clientId, media })) return;
      addPending(c.id, clientId, kind, media.caption || chosen.name);
    } catch (e) {
      toast(`Attachment not sent: ${e.message}`, 'error');
    }
  };
  box.replaceChildren(canned, h('div', { class: 'reply-row' }, input,
    h('div', { class: 'reply-actions' },
      h('button', { class: 'primary', testid: 'reply-send', onclick: sendText }, 'Send'),
      h('button', { testid: 'attach', title: 'Attach a file', onclick: () => file.click() }, '📎 Attach'),
      file)));
}

const mediaKindOf = (type) => (type.startsWith('image/') ? 'image'
  : type.startsWith('video/') ? 'video' : type.startsWith('audio/') ? 'audio' : 'document');

/** An optimistic bubble for a reply until the server's `sent` (or `error`) arrives. */
function addPending(cid, clientId, kind, text) {
  const m = { id: null, client_id: clientId, direction: 'out', kind, text, timestamp: new Date().toISOString(), status: 'queued', pending: true };
  pending.set(clientId, cid);
  if (!history.has(cid)) history.set(cid, []);
  history.get(cid).push(m);
  previews.set(cid, m);
  if (cid === selected) appendMessage(m);
  renderList();
}

const bodyOf = (t) => (t.components || []).find((x) => String(x.type).toUpperCase() === 'BODY')?.text || '';
const placeholders = (text) => [...new Set([...text.matchAll(/\{\{\s*(\d+)\s*\}\}/g)].map((x) => Number(x[1])))].sort((a, b) => a - b);
const langOf = (t) => (typeof t.language === 'string' ? t.language : t.language?.code || '');

async function renderTemplateReply(box, c) {
  const notice = h('div', { class: 'notice', testid: 'window-closed' },
    'The 24-hour window is closed: only an approved template can be sent until the customer writes again.');
  box.replaceChildren(notice, h('p', { class: 'empty' }, 'Loading templates…'));
  if (!templates.has(c.id)) {
    try {
      const page = await api('GET', `/api/v1/conversations/${encodeURIComponent(c.id)}/templates`);
      templates.set(c.id, page.items || []);
    } catch (e) {
      box.replaceChildren(notice, h('p', { class: 'error' }, `Templates: ${e.message}`));
      return;
    }
  }
  if (selected !== c.id || replyMode !== 'template') return;
  const list = templates.get(c.id);
  const select = h('select', { testid: 'template-select', disabled: !list.length },
    list.length ? list.map((t, i) => h('option', { value: i }, `${t.name} · ${langOf(t)}`)) : h('option', { value: '' }, 'No approved templates'));
  const params = h('div', { class: 'params' });
  const previewBox = h('div', { class: 'template-preview' });
  const inputs = () => [...params.querySelectorAll('input')];
  const fill = () => {
    const t = list[select.value];
    if (!t) return '';
    const values = Object.fromEntries(inputs().map((i) => [i.dataset.n, i.value]));
    return bodyOf(t).replace(/\{\{\s*(\d+)\s*\}\}/g, (all, n) => values[n] || all);
  };
  const build = () => {
    const t = list[select.value];
    params.replaceChildren(...(t ? placeholders(bodyOf(t)) : []).map((n) =>
      h('input', { testid: 'template-param', 'data-n': n, placeholder: `{{${n}}}`, oninput: () => { previewBox.textContent = fill(); } })));
    previewBox.textContent = fill();
  };
  select.addEventListener('change', build);
  build();
  const sendTemplate = () => {
    const t = list[select.value];
    if (!t) return;
    if (inputs().some((i) => !i.value.trim())) {
      toast('Fill in every template parameter.', 'error');
      return;
    }
    const parameters = inputs().map((i) => ({ type: 'text', text: i.value.trim() }));
    const clientId = newId();
    const frame = {
      type: 'send_template', conversation_id: c.id, client_id: clientId,
      template: { name: t.name, language: { code: langOf(t) }, components: parameters.length ? [{ type: 'body', parameters }] : [] },
    };
    if (!sendOrWarn(frame)) return;
    addPending(c.id, clientId, 'template', fill() || `[template ${t.name}]`);
    for (const i of inputs()) i.value = '';
    previewBox.textContent = fill();
  };
  box.replaceChildren(notice, h('div', { class: 'template-row' }, select, params, previewBox,
    h('button', { class: 'primary', testid: 'template-send', disabled: !list.length, onclick: sendTemplate }, 'Send template')));
}

// ---- rendering: side panel ---------------------------------------------------------------

function renderSide() {
  const side = $('side');
  const c = convs.get(selected);
  // A resync rebuilds the panel: keep a half-written note of the same conversation.
  const note = side.dataset.cid === selected ? side.querySelector('textarea')?.value : '';
  side.dataset.cid = selected || '';
  if (!c) return side.replaceChildren();
  const info = (label, value) => (value ? [h('dt', {}, label), h('dd', {}, String(value))] : []);
  side.replaceChildren(
    h('h2', {}, 'Contact'),
    h('dl', { class: 'info' },
      info('Name', contactName(c.contact)), info('Phone', c.contact?.phone), info('Username', c.contact?.username),
      info('Team', teamName(c.team_id)), info('Priority', c.priority), info('Since', fmtTime(c.created_at)),
      info('Last inbound', fmtTime(c.last_inbound_at))),
    h('h2', {}, 'Earlier conversations'), contactHistory(c.contact, c.id),
    h('h2', {}, 'Tags'), tagsNode(c),
    h('h2', {}, 'Notes'), notesNode(c),
    h('h2', {}, 'Transfer'), transferNode(c),
    h('button', { class: 'danger wide', testid: 'resolve', onclick: () => sendOrWarn({ type: 'resolve', conversation_id: c.id }) }, 'Resolve conversation'));
  if (note) side.querySelector('textarea').value = note;
  return undefined;
}

function tagsNode(c) {
  const save = async (tags) => {
    try {
      const res = await api('PUT', `/api/v1/conversations/${encodeURIComponent(c.id)}/tags`, { tags });
      c.tags = res.tags;
      if (selected === c.id) {
        chips.replaceWith(tagsNode(c));
        $('tag-input')?.focus();
      }
      renderList();
    } catch (e) {
      toast(e.message, 'error');
    }
  };
  const input = h('input', {
    id: 'tag-input', testid: 'tag-input', placeholder: 'Add tag + Enter',
    onkeydown: (ev) => {
      const tag = input.value.trim().replace(/,$/, '');
      if (ev.key !== 'Enter' || !tag) return;
      ev.preventDefault();
      if (!c.tags.includes(tag)) save([...c.tags, tag]);
      input.value = '';
    },
  });
  const chips = h('div', { class: 'chips' },
    c.tags.map((t) => h('span', { class: 'chip', testid: 'tag' }, t,
      h('button', { class: 'chip-x', title: `Remove ${t}`, 'aria-label': `Remove ${t}`, onclick: () => save(c.tags.filter((x) => x !== t)) }, '×'))),
    input);
  return chips;
}

function notesNode(c) {
  const list = h('ul', { class: 'notes' }, h('li', { class: 'empty' }, 'Loading…'));
  const note = (n) => h('li', { class: 'note', testid: 'note' },
    h('div', { class: 'sub' }, `${n.author_name || agentName(n.author_id)} · ${fmtTime(n.created_at)}`),
    h('div', {}, n.text));
  api('GET', `/api/v1/conversations/${encodeURIComponent(c.id)}/notes`).then((page) => {
    const items = page.items || [];
    list.replaceChildren(...(items.length ? items.map(note) : [h('li', { class: 'empty' }, 'No notes yet')]));
  }).catch((e) => list.replaceChildren(h('li', { class: 'error' }, e.message)));
  const input = h('textarea', { testid: 'note-input', rows: 2, placeholder: 'Internal note (not sent to the customer)' });
  const add = async () => {
    const text = input.value.trim();
    if (!text) return;
    button.disabled = true;
    try {
      const n = await api('POST', `/api/v1/conversations/${encodeURIComponent(c.id)}/notes`, { text });
      list.querySelector('.empty')?.remove();
      list.append(note(n));
      input.value = '';
    } catch (e) {
      toast(e.message, 'error');
    } finally {
      button.disabled = false;
    }
  };
  const button = h('button', { testid: 'note-add', onclick: add }, 'Add note');
  return h('div', {}, list, input, button);
}

function transferNode(c) {
  const agents = [...dir.agents.values()].filter((a) => a.id !== me.agent_id).sort((a, b) => a.name.localeCompare(b.name));
  const teams = [...dir.teams.values()].sort((a, b) => a.name.localeCompare(b.name));
  const select = h('select', { testid: 'transfer-select' },
    h('option', { value: '' }, 'Transfer to…'),
    h('optgroup', { label: 'Agents' }, agents.map((a) => h('option', { value: `agent:${a.id}` }, a.name))),
    h('optgroup', { label: 'Teams' }, teams.map((t) => h('option', { value: `team:${t.id}` }, t.name))));
  const submit = () => {
    const [kind, id] = select.value.split(/:(.*)/s);
    if (!id) return toast('Pick an agent or a team first.', 'error');
    const frame = { type: 'transfer', conversation_id: c.id };
    frame[kind === 'agent' ? 'to_agent_id' : 'to_team_id'] = id;
    return sendOrWarn(frame);
  };
  return h('div', { class: 'inline-form' }, select, h('button', { testid: 'transfer-submit', onclick: submit }, 'Transfer'));
}

// ---- the clock ---------------------------------------------------------------------------

// One timer for every live countdown on the page; it only touches text nodes.
function tick() {
  if (queue && ++ticks % 5 === 0) queue.refresh();
  for (const node of document.querySelectorAll('[data-expires]')) node.textContent = countdown(node.dataset.expires);
  for (const node of document.querySelectorAll('[data-window]')) {
    const c = convs.get(node.dataset.window);
    if (!c) continue;
    node.textContent = windowLabel(c);
    node.classList.toggle('closed', windowLeft(c) <= 0);
  }
  for (const node of document.querySelectorAll('[data-sla]')) {
    const conv = convs.get(node.dataset.sla);
    const state = conv && slaState(conv);
    if (!state) continue;
    node.textContent = state.text;
    node.className = `badge sla ${state.cls}`;
    node.dataset.slaState = state.cls || 'running';
  }
  const c = convs.get(selected);
  if (c && replyMode && replyMode !== (windowLeft(c) > 0 ? 'text' : 'template')) renderReply();
}
