// Shared by the console and the dashboard: session, REST, the ticketed websocket, DOM helpers.
// Server data is untrusted (customer text): nodes are built with createElement/textContent only.

const SESSION_KEY = 'waos.session';

export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

// ---- session -------------------------------------------------------------------------------

export function getSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY));
    if (!s || !s.token) return null;
    // An expired token would only earn a 401; drop it now and show the login form at once.
    if (s.expires_at && Date.parse(s.expires_at) <= Date.now()) return clearSession();
    return s;
  } catch {
    return null;
  }
}

function clearSession() {
  sessionStorage.removeItem(SESSION_KEY);
  return null;
}

const lostHandlers = [];
// Any 401 on an authenticated call ends the session everywhere on the page.
function sessionLost() {
  clearSession();
  for (const fn of lostHandlers) fn();
}

// ---- REST ----------------------------------------------------------------------------------

async function request(method, path, body) {
  const session = getSession();
  const headers = {};
  if (session) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError('network', 'The server cannot be reached.', 0);
  }
  if (res.ok) return res;
  const payload = await res.json().catch(() => null);
  const err = payload && payload.error;
  if (res.status === 401 && session) sessionLost();
  throw new ApiError(err?.code || `http_${res.status}`, err?.message || `${res.status} ${res.statusText}`, res.status);
}

/** JSON in, JSON out; throws ApiError carrying the server's `{error:{code,message}}`. */
export async function api(method, path, body) {
  const res = await request(method, path, body);
  if (res.status === 204) return null;
  return (res.headers.get('content-type') || '').includes('json') ? res.json() : null;
}

/** Bytes with the Bearer header (media cannot be loaded by a plain <img src>). */
export async function apiBlob(path) {
  return (await request('GET', path)).blob();
}

export async function loadDirectory() {
  const d = await api('GET', '/api/v1/directory');
  return {
    teams: new Map((d.teams || []).map((t) => [t.id, t])),
    agents: new Map((d.agents || []).map((a) => [a.id, a])),
  };
}

// ---- login form (same markup on both pages) -------------------------------------------------

/**
 * Wires the static login form, the logout button and 401 handling.
 * onReady(session) starts the page; onGone() tears it down (socket, state, DOM).
 */
export function bootAuth({ onReady, onGone }) {
  const $ = (id) => document.getElementById(id);
  const form = $('login-form');
  const error = $('login-error');
  const showError = (text) => { error.textContent = text; error.hidden = !text; };
  const show = (loggedIn) => {
    $('login').hidden = loggedIn;
    $('app').hidden = !loggedIn;
    $('session-bar').hidden = !loggedIn;
  };
  const enter = (session) => { show(true); showError(''); onReady(session); };
  const leave = (why) => { onGone(); show(false); showError(why || ''); $('login-email').focus(); };

  lostHandlers.push(() => leave('Your session has ended. Please sign in again.'));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    showError('');
    try {
      const session = await api('POST', '/api/v1/auth/login', {
        email: $('login-email').value.trim(),
        password: $('login-password').value,
      });
      sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
      $('login-password').value = '';
      enter(session);
    } catch (e) {
      showError(e.message);
    } finally {
      button.disabled = false;
    }
  });

  $('logout').addEventListener('click', async () => {
    // Best effort: the token is dropped locally whatever the server answers.
    await api('POST', '/api/v1/auth/logout').catch(() => {});
    clearSession();
    leave('');
  });

  const session = getSession();
  if (session) enter(session);
  else leave('');
}

// ---- live socket ---------------------------------------------------------------------------

/**
 * A websocket that reconnects with exponential backoff (0.5 s .. 10 s). Every attempt first
 * gets a fresh single-use ticket, so the token never appears in a URL.
 * onState gets 'connecting' | 'live' | 'reconnecting' | 'offline'.
 */
export class LiveSocket {
  constructor(path, { onFrame, onState }) {
    this.path = path;
    this.onFrame = onFrame;
    this.onState = onState;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = true;
    // Back online: do not sit out the rest of a 10 s backoff.
    this.onOnline = () => { if (!this.ws && !this.stopped) { clearTimeout(this.timer); this.connect(); } };
  }

  start() {
    this.stopped = false;
    window.addEventListener('online', this.onOnline);
    this.onState('connecting');
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
    this.onState('offline');
  }

  get open() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  /** Returns false (nothing sent) while disconnected, so callers can keep the user's input. */
  send(frame) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  async connect() {
    let ticket;
    try {
      ({ ticket } = await api('POST', '/api/v1/auth/ws-ticket'));
    } catch (e) {
      if (e.status !== 401) this.retry(); // a 401 already ended the session
      return;
    }
    if (this.stopped) return;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}${this.path}?ticket=${encodeURIComponent(ticket)}`);
    this.ws = ws;
    ws.addEventListener('open', () => { if (this.ws === ws) this.onState('live'); });
    ws.addEventListener('message', (ev) => {
      if (this.ws !== ws) return;
      // Reset the backoff only once the server actually talks, not on a bare open that
      // might be closed straight away.
      this.attempt = 0;
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      this.onFrame(frame);
    });
    ws.addEventListener('close', () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (!this.stopped) this.retry();
    });
  }

  retry() {
    if (this.stopped) return;
    const delay = Math.min(10000, 500 * 2 ** this.attempt);
    this.attempt += 1;
    this.onState('reconnecting');
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}

/** Shows a socket state in the header indicator (textContent contains "live" only when open). */
export function showConnection(state) {
  const node = document.getElementById('connection');
  const label = { live: 'live', connecting: 'connecting…', reconnecting: 'reconnecting…', offline: 'offline' };
  node.textContent = label[state] || state;
  node.className = `conn ${state}`;
}

// ---- DOM helpers ---------------------------------------------------------------------------

/** h('div', {class, testid, text, onclick, 'data-x': 1}, ...children) — children as text nodes. */
export function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'testid') node.dataset.testid = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) if (child != null && child !== false) node.append(child);
  return node;
}

export function toast(text, kind = 'info') {
  const box = document.getElementById('toasts');
  while (box.children.length >= 4) box.firstChild.remove();
  const node = h('div', { class: `toast ${kind}`, testid: 'toast', role: 'status' }, text);
  box.append(node);
  setTimeout(() => node.remove(), kind === 'error' ? 8000 : 4500);
}

export const newId = () => (crypto.randomUUID ? crypto.randomUUID()
  : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`);

// ---- formatting ----------------------------------------------------------------------------

/** 45s, 4m 05s, 23h 10m, 2d 3h. */
export function fmtDuration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const pad = (n) => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** mm:ss (h:mm:ss past an hour), for live waiting clocks. */
export function fmtClock(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const pad = (n) => String(n).padStart(2, '0');
  const hours = Math.floor(s / 3600);
  const rest = `${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
  return hours ? `${hours}:${rest}` : rest;
}

/** 14:05 today, otherwise "3 Mar 14:05". */
export function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (d.toDateString() === new Date().toDateString()) return time;
  return `${d.toLocaleDateString([], { day: 'numeric', month: 'short' })} ${time}`;
}

export const shortId = (id) => (id ? String(id).slice(0, 8) : '');

export function contactName(contact) {
  if (!contact) return 'Unknown contact';
  return contact.name || contact.username || contact.phone || contact.user_id || 'Unknown contact';
}
