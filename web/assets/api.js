// Shared by the console, the dashboard and the admin pages: session, REST, the ticketed websocket,
// DOM helpers, field errors on forms and the change-password dialog.
// Server data is untrusted (customer text): nodes are built with createElement/textContent only.

const SESSION_KEY = 'waos.session';

export class ApiError extends Error {
  /** `field`: on a 422 or 409, the path of the offending input as the server names it (`weekly.mon[0][1]`). */
  constructor(code, message, status, field = null) {
    super(message);
    this.code = code;
    this.status = status;
    this.field = field;
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

const gainedHandlers = [];

/**
 * Signs in and stores the session exactly as the login form does; the page's bootAuth then
 * enters the app (so a flow other than the login form, like the admin's first-run setup,
 * can sign in too). Answers the session; throws ApiError (401 wrong password, 429 throttled).
 */
export async function signIn(email, password) {
  // No bearer: whatever token the tab still holds has nothing to do with this sign-in.
  const session = await api('POST', '/api/v1/auth/login', { email: email.trim(), password }, { token: null });
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  for (const fn of gainedHandlers) fn(session);
  return session;
}

// ---- REST ----------------------------------------------------------------------------------

// options.token: absent = the session's token; a string = that bearer instead (the bootstrap
// admin token of the first-run setup); null = no Authorization header at all.
async function request(method, path, body, options = {}) {
  const explicit = 'token' in options;
  const session = explicit ? null : getSession();
  const token = explicit ? options.token : session?.token;
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
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
  // Only the session's own token being refused ends the session (not an explicit one's).
  if (res.status === 401 && session) sessionLost();
  throw new ApiError(err?.code || `http_${res.status}`, err?.message || `${res.status} ${res.statusText}`,
    res.status, err?.field || null);
}

/**
 * JSON in, JSON out; throws ApiError carrying the server's `{error:{code,message,field?}}`.
 * options: `{token}` to send that bearer instead of the session's (see request()).
 */
export async function api(method, path, body, options) {
  const res = await request(method, path, body, options);
  if (res.status === 204) return null;
  return (res.headers.get('content-type') || '').includes('json') ? res.json() : null;
}

/** Bytes with the Bearer header (media cannot be loaded by a plain <img src>). */
export async function apiBlob(path, options) {
  return (await request('GET', path, undefined, options)).blob();
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
  // Whoever signs in (this form or another flow of the page) enters the app.
  gainedHandlers.push(enter);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    showError('');
    try {
      await signIn($('login-email').value, $('login-password').value);
      $('login-password').value = '';
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

// ---- field errors on forms ------------------------------------------------------------------
//
// Markup convention (console, admin): every input carries `data-field="<api path>"` and is
// followed by `<span class="field-error" role="alert" hidden>` (a fieldset holding a group of
// checkboxes has the span as its own child); each form has one `<p class="form-error">` for
// what belongs to no field.

/** The error span of a `[data-field]` element. */
function errorSpanOf(el) {
  const next = el.nextElementSibling;
  if (next && next.classList.contains('field-error')) return next;
  return el.querySelector(':scope > .field-error');
}

/** `prefix` names `path` or one of its parts: `weekly.mon` of `weekly.mon[0][1]`, not of `weekly.monday`. */
function pathStartsWith(path, prefix) {
  if (!path.startsWith(prefix)) return false;
  const rest = path.slice(prefix.length);
  return rest === '' || rest[0] === '.' || rest[0] === '[';
}

function hiddenIn(el, root) {
  for (let node = el; node && node !== root; node = node.parentElement) if (node.hidden) return true;
  return false;
}

/** The visible `[data-field]` element that `field` lands on: exact, else the longest prefix. */
export function fieldTarget(form, field) {
  if (!field) return null;
  let best = null;
  for (const el of form.querySelectorAll('[data-field]')) {
    if (hiddenIn(el, form)) continue;
    const path = el.dataset.field;
    if (!pathStartsWith(field, path)) continue;
    if (!best || path.length > best.dataset.field.length) best = el;
  }
  return best;
}

export function clearFormErrors(form) {
  for (const span of form.querySelectorAll('.field-error')) { span.textContent = ''; span.hidden = true; }
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  for (const p of form.querySelectorAll('.form-error')) { p.textContent = ''; p.hidden = true; }
}

const focusable = (el) => (el.matches('input, select, textarea, button') ? el
  : el.querySelector('input:not([disabled]), select:not([disabled]), textarea:not([disabled]), button:not([disabled])'));

/**
 * Shows problems on a form: each `{field, message}` (an ApiError, or a client-side problem)
 * beside its input, or in the form's general error when it names no visible input. Focuses
 * the first one's input.
 */
export function showFormErrors(form, problems) {
  let first = null;
  for (const problem of [problems].flat()) {
    const target = fieldTarget(form, problem.field);
    const span = target && errorSpanOf(target);
    if (span) {
      span.textContent = problem.message;
      span.hidden = false;
      target.setAttribute('aria-invalid', 'true');
      first = first || focusable(target);
    } else {
      const general = form.querySelector('.form-error');
      if (general) {
        general.textContent = general.hidden ? problem.message : `${general.textContent} ${problem.message}`;
        general.hidden = false;
      } else {
        toast(problem.message, 'error');
      }
    }
  }
  if (first) first.focus();
  else form.querySelector('.form-error:not([hidden])')?.scrollIntoView({ block: 'nearest' });
}

/** The empty, hidden span beside a field where its refusal is shown. */
export const fieldError = () => h('span', { class: 'field-error', role: 'alert', hidden: true });

/** An input labelled `name` with its field-error span: `<label>Name <small>hint</small><input><span>`. */
export function labelled(name, control, hint) {
  return h('label', { class: 'field' }, `${name} `, hint ? h('small', { class: 'hint' }, hint) : null,
    control, fieldError());
}

// ---- change one's own password --------------------------------------------------------------

let passwordDialog = null;

/** Opens the "change your password" dialog (built on first use; the page needs a #toasts box). */
export function openPasswordDialog() {
  if (!passwordDialog) passwordDialog = buildPasswordDialog();
  const { dialog, form } = passwordDialog;
  form.reset();
  clearFormErrors(form);
  if (!dialog.open) dialog.showModal();
  form.querySelector('[data-field=current]').focus();
}

export function closePasswordDialog() {
  if (passwordDialog?.dialog.open) passwordDialog.dialog.close();
  passwordDialog?.form.reset();
}

function buildPasswordDialog() {
  const current = h('input', { type: 'password', 'data-field': 'current', testid: 'password-current', autocomplete: 'current-password' });
  const fresh = h('input', { type: 'password', 'data-field': 'new', testid: 'password-new', autocomplete: 'new-password' });
  const save = h('button', { type: 'submit', class: 'primary', testid: 'password-save' }, 'Save');
  const cancel = h('button', { type: 'button', testid: 'password-cancel' }, 'Cancel');
  const form = h('form', { class: 'dialog-form', novalidate: true, testid: 'password-form' },
    h('h3', { id: 'password-title' }, 'Change your password'),
    labelled('Current password', current),
    labelled('New password', fresh, 'at least 10 characters; your other sessions will be signed out'),
    h('p', { class: 'form-error', role: 'alert', hidden: true }),
    h('div', { class: 'dialog-actions' }, cancel, save));
  const dialog = h('dialog', { class: 'dialog', 'aria-labelledby': 'password-title', testid: 'password-dialog' }, form);
  document.body.append(dialog);

  cancel.addEventListener('click', () => closePasswordDialog());
  dialog.addEventListener('close', () => form.reset());
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearFormErrors(form);
    const missing = [];
    if (!current.value) missing.push({ field: 'current', message: 'Enter your current password.' });
    if (!fresh.value) missing.push({ field: 'new', message: 'Enter a new password.' });
    if (missing.length) return showFormErrors(form, missing);
    save.disabled = true;
    try {
      await api('POST', '/api/v1/auth/password', { current: current.value, new: fresh.value });
      closePasswordDialog();
      toast('Password changed; your other sessions were signed out.');
    } catch (e) {
      showFormErrors(form, e);
    } finally {
      save.disabled = false;
    }
    return undefined;
  });
  return { dialog, form };
}

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
