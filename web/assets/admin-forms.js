// The admin pages' building blocks: a form made from a list of field specs (each input labelled
// with its API field's name, carrying `data-field`, its errors shown beside it), the list table
// beside it, and the text forms of calendar hours. Plain DOM; server data only as textContent.
import { ApiError, clearFormErrors, fieldError, h, labelled, showFormErrors, toast } from '/assets/api.js';

/** A value the user typed that cannot be sent: shown at `field`, nothing is sent. */
export class FieldProblem extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

/** Several of them at once (a custom field with rows). */
export class FieldProblems extends Error {
  constructor(list) {
    super(list.map((p) => p.message).join(' '));
    this.list = list;
  }
}

/** Returned by a field's conversion: leave the key out of the body (a write-only secret left empty). */
export const OMIT = Symbol('omit');

/** A list answer is either an array or `{items, next_cursor}`. */
export const listOf = (answer) => (Array.isArray(answer) ? answer : answer?.items || []);

export const splitList = (text) => text.split(',').map((part) => part.trim()).filter(Boolean);

export function getPath(object, path) {
  return path.split('.').reduce((node, key) => (node == null ? undefined : node[key]), object);
}

export function setPath(object, path, value) {
  const keys = path.split('.');
  let node = object;
  for (const key of keys.slice(0, -1)) {
    if (node[key] == null || typeof node[key] !== 'object') node[key] = {};
    node = node[key];
  }
  node[keys.at(-1)] = value;
}

/** A `datetime-local` value for an RFC 3339 instant, in the browser's zone. */
function localInput(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// ---- fields ----------------------------------------------------------------------------------
//
// A field spec: {
//   key        body path the value goes to (`name`, `retention.message_days`, `weekly.mon`)
//   field      data-field, when it differs from key (default: key)
//   label      the API name in words, capitalised; the label text starts with it
//   hint       text or (mode) => text, in a <small> after the label
//   type       text | email | password | textarea | number | checkbox | select | checks | list | datetime
//   required   true, or 'create' (required only when creating)
//   only       'create' | 'edit': the field exists in that mode only
//   lockOnEdit shown but disabled and not sent when editing (what the API cannot change)
//   secret     write-only: never filled in from the item; when editing, empty means "keep"
//   default    value (or () => value) of a new item
//   options    () => [[value, text], ...] for select and checks
//   showIf     (form) => bool, evaluated on every change
//   parse      (raw text, form) => value | OMIT, may throw FieldProblem
//   format     (value) => raw text, for loading an item
//   fromItem   (item) => value, when the item does not hold it at `key`
//   attrs      extra attributes of the control (placeholder, list, rows, min, max ...)
// }
// or {type: 'group', legend, fields, note, showIf} (a fieldset), or {type: 'custom', key, node,
// read(mode, form) -> value for the body, write(value, item), reset(), refresh()} for an editor
// of its own.

let counter = 0;
const controlId = () => `af-${++counter}`;

function buildControl(spec) {
  const attrs = { id: controlId(), 'data-field': spec.field || spec.key, ...spec.attrs };
  switch (spec.type) {
    case 'textarea': return h('textarea', { rows: 3, ...attrs });
    case 'select': return h('select', attrs);
    case 'checkbox': return h('input', { type: 'checkbox', ...attrs });
    case 'number': return h('input', { type: 'number', step: 1, inputmode: 'numeric', ...attrs });
    case 'datetime': return h('input', { type: 'datetime-local', ...attrs });
    case 'password': return h('input', { type: 'password', autocomplete: 'new-password', ...attrs });
    case 'email': return h('input', { type: 'email', autocomplete: 'off', ...attrs });
    default: return h('input', { type: 'text', autocomplete: 'off', ...attrs });
  }
}

/** Builds one field: `{spec, wrap, control, hint}` (`control` is the [data-field] element). */
export function buildField(spec) {
  const hint = h('small', { class: 'hint' });
  if (spec.type === 'checks') {
    // A group of checkboxes: the fieldset is the [data-field] element and holds the error span.
    const list = h('div', { class: 'check-list' });
    const wrap = h('fieldset', { class: 'field checks', 'data-field': spec.field || spec.key },
      h('legend', {}, spec.label), hint, list, fieldError());
    return { spec, wrap, control: wrap, list, hint };
  }
  const control = buildControl(spec);
  if (spec.type === 'checkbox') {
    const wrap = h('label', { class: 'field check' }, `${spec.label} `, hint, control,
      fieldError());
    return { spec, wrap, control, hint };
  }
  const wrap = labelled(spec.label, control);
  wrap.insertBefore(hint, control);
  return { spec, wrap, control, hint };
}

const isRequired = (spec, mode) => spec.required === true || (spec.required === mode);

/** Fills a select or a checkbox group from `spec.options()`, keeping what was chosen. */
export function refreshOptions(field) {
  const { spec } = field;
  if (!spec.options) return;
  const options = spec.options();
  if (spec.type === 'checks') {
    const chosen = new Set(readChecks(field));
    field.list.replaceChildren(...(options.length ? options.map(([value, text]) => h('label', { class: 'check' },
      `${text} `, h('input', { type: 'checkbox', value, checked: chosen.has(value) })))
      : [h('span', { class: 'empty' }, 'None yet.')]));
    return;
  }
  const current = field.control.value;
  field.control.replaceChildren(...options.map(([value, text]) => h('option', { value }, text)));
  setSelect(field.control, current);
}

/** Chooses `value`, adding an option for an id the lists do not hold (so nothing is lost on save). */
function setSelect(select, value) {
  const wanted = value == null ? '' : String(value);
  if (wanted && ![...select.options].some((o) => o.value === wanted)) {
    select.append(h('option', { value: wanted }, `(unknown ${wanted.slice(0, 8)})`));
  }
  if ([...select.options].some((o) => o.value === wanted)) select.value = wanted;
  else if (select.options.length) select.selectedIndex = 0;
}

const readChecks = (field) => [...field.list.querySelectorAll('input[type=checkbox]:checked')].map((i) => i.value);

/** The field's value for the body, OMIT, or a FieldProblem thrown. */
export function readField(field, mode, form) {
  const { spec, control } = field;
  // The control's data-field, which rows renumber, names the problem.
  const at = control.dataset.field || spec.field || spec.key;
  const empty = () => {
    if (isRequired(spec, mode)) throw new FieldProblem(at, `${spec.label} is required.`);
    if (spec.secret && mode === 'edit') return OMIT;
    return null;
  };
  if (spec.type === 'checkbox') return control.checked;
  if (spec.type === 'checks') return readChecks(field);
  const raw = control.value;
  if (spec.parse) return spec.parse(raw, form);
  switch (spec.type) {
    case 'password':
      return raw === '' ? empty() : raw; // passwords are taken as typed, spaces and all
    case 'number': {
      if (control.validity && control.validity.badInput) throw new FieldProblem(at, 'Enter a whole number.');
      const text = raw.trim();
      if (!text) return empty();
      const n = Number(text);
      if (!Number.isInteger(n)) throw new FieldProblem(at, 'Enter a whole number.');
      return n;
    }
    case 'list':
      return splitList(raw);
    case 'datetime': {
      if (!raw) return empty();
      const d = new Date(raw); // a datetime-local value without a zone is read as local time
      if (Number.isNaN(d.getTime())) throw new FieldProblem(at, 'Enter a date and time.');
      return d.toISOString();
    }
    case 'select':
      return raw === '' ? empty() : raw;
    default: {
      const text = raw.trim();
      return text === '' ? empty() : text;
    }
  }
}

/** Puts a value (from an item, or a default) into the field. */
export function writeField(field, value) {
  const { spec, control } = field;
  if (spec.type === 'checkbox') { control.checked = Boolean(value); return; }
  if (spec.type === 'checks') {
    const chosen = new Set(value || []);
    for (const box of field.list.querySelectorAll('input[type=checkbox]')) box.checked = chosen.has(box.value);
    return;
  }
  if (spec.secret) { control.value = ''; return; }
  if (spec.format) { control.value = spec.format(value); return; }
  if (spec.type === 'select') { setSelect(control, value); return; }
  if (spec.type === 'list') { control.value = Array.isArray(value) ? value.join(', ') : ''; return; }
  if (spec.type === 'datetime') { control.value = value ? localInput(value) : ''; return; }
  control.value = value == null ? '' : String(value);
}

/** Whether `el` or one of its ancestors up to `root` is hidden (a field the form does not show). */
export function hiddenWithin(el, root) {
  for (let node = el; node && node !== root; node = node.parentElement) if (node.hidden) return true;
  return false;
}

/** Whether a body value is what the item being edited holds (null and absent alike). */
function same(value, held) {
  const norm = (v) => JSON.stringify(v === undefined ? null : v);
  return norm(value) === norm(held);
}

const defaultOf = (spec) => (typeof spec.default === 'function' ? spec.default() : spec.default);

// ---- forms -----------------------------------------------------------------------------------

/**
 * A form from field specs. `submit(body, form)` sends it (one request) and answers what to do
 * next; an ApiError it throws is shown at its field. Answers the form controller:
 * {node, mode, item, reset(), load(item), value(key), refresh(), setMode(mode)}.
 */
export function buildForm({ fields, submit, finish, testid, createText = 'Create', saveText = 'Save', extra = [] }) {
  const node = h('form', { class: 'admin-form', novalidate: true, testid });
  const all = [];
  const build = (spec) => {
    if (spec.type === 'group') {
      const set = h('fieldset', { class: 'group' }, h('legend', {}, spec.legend),
        spec.note ? h('p', { class: 'sub' }, spec.note) : null);
      const inner = spec.fields.map(build);
      set.append(...inner);
      all.push({ spec, wrap: set, group: true });
      return set;
    }
    if (spec.type === 'custom') {
      all.push({ spec, wrap: spec.node, custom: true });
      return spec.node;
    }
    const field = buildField(spec);
    all.push(field);
    return field.wrap;
  };
  node.append(...fields.map(build));
  const general = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const button = h('button', { type: 'submit', class: 'primary', testid: testid ? `${testid}-submit` : null }, createText);
  node.append(...extra, general, h('div', { class: 'form-buttons' }, button));

  const form = {
    node, button, mode: 'create', item: null,

    field: (key) => all.find((f) => f.spec.key === key),
    /** The raw current value of a plain field (select value, checkbox state). */
    value(key) {
      const f = form.field(key);
      if (!f || f.custom || f.group) return undefined;
      return f.spec.type === 'checkbox' ? f.control.checked : f.control.value;
    },

    setMode(mode) {
      form.mode = mode;
      button.textContent = mode === 'edit' ? saveText : createText;
      for (const f of all) {
        if (f.custom || f.group) continue;
        const hint = typeof f.spec.hint === 'function' ? f.spec.hint(mode) : f.spec.hint;
        f.hint.textContent = hint || '';
        if (f.spec.lockOnEdit) f.control.disabled = mode === 'edit';
      }
      form.sync();
    },

    /** Shows and hides what depends on the mode and on other fields' values. */
    sync() {
      for (const f of all) {
        const { only, showIf } = f.spec;
        f.wrap.hidden = (only && only !== form.mode) || (showIf && !showIf(form)) || false;
      }
    },

    refresh() {
      for (const f of all) {
        if (f.custom) f.spec.refresh?.();
        else if (!f.group) refreshOptions(f);
      }
    },

    reset() {
      clearFormErrors(node);
      form.item = null;
      form.refresh();
      for (const f of all) {
        if (f.group) continue;
        if (f.custom) f.spec.reset();
        else writeField(f, defaultOf(f.spec));
      }
      form.setMode('create');
    },

    load(item) {
      clearFormErrors(node);
      form.item = item;
      form.refresh();
      for (const f of all) {
        if (f.group) continue;
        const value = f.spec.fromItem ? f.spec.fromItem(item) : getPath(item, f.spec.key);
        if (f.custom) f.spec.write(value, item);
        else writeField(f, value === undefined ? defaultOf(f.spec) : value);
      }
      form.setMode('edit');
    },

    /** The request body; throws FieldProblems listing every value that cannot be sent. */
    collect() {
      const body = {};
      const problems = [];
      for (const f of all) {
        if (f.group || hiddenWithin(f.wrap, node)) continue;
        if (f.spec.lockOnEdit && form.mode === 'edit') continue;
        try {
          const value = f.custom ? f.spec.read(form.mode, form) : readField(f, form.mode, form);
          if (value !== OMIT) setPath(body, f.spec.key, value);
        } catch (e) {
          if (e instanceof FieldProblem) problems.push(e);
          else if (e instanceof FieldProblems) problems.push(...e.list);
          else throw e;
        }
      }
      if (problems.length) throw new FieldProblems(problems);
      if (finish) finish(body, form);
      // Editing, only what changed is sent: saving one field never overwrites another admin's
      // change to the rest, nor re-sends a state (a channel's pause) as if chosen. Whole
      // top-level values are compared, so a changed `weekly` or `retention` goes whole.
      if (form.mode === 'edit' && form.item) {
        for (const key of Object.keys(body)) if (same(body[key], form.item[key])) delete body[key];
      }
      return body;
    },

    focusFirst() {
      node.querySelector('input:not([disabled]):not([type=hidden]), select:not([disabled]), textarea:not([disabled])')?.focus();
    },
  };

  node.addEventListener('change', () => form.sync());
  node.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearFormErrors(node);
    let body;
    try {
      body = form.collect();
    } catch (e) {
      if (e instanceof FieldProblems) return showFormErrors(node, e.list);
      throw e;
    }
    button.disabled = true;
    try {
      await submit(body, form);
    } catch (e) {
      if (e instanceof FieldProblems) showFormErrors(node, e.list);
      else showFormErrors(node, e instanceof ApiError || e instanceof FieldProblem ? e : { message: e.message });
    } finally {
      button.disabled = false;
    }
    return undefined;
  });

  form.reset();
  return form;
}

// ---- list tables -----------------------------------------------------------------------------

/**
 * A table of items: `columns` are [heading, (item) => text or node]; `buttons(item)` gives the
 * row's buttons. Each row is `tr[data-testid=row][data-id]`.
 */
export function listTable({ columns, buttons, empty = 'None yet.', testid }) {
  const body = h('tbody');
  const none = h('p', { class: 'empty' }, empty);
  const table = h('table', { class: 'table', testid },
    h('thead', {}, h('tr', {}, ...columns.map(([heading]) => h('th', {}, heading)), h('th', {}, ''))), body);
  const node = h('div', { class: 'table-wrap' }, table, none);
  return {
    node,
    render(items) {
      none.hidden = items.length > 0;
      table.hidden = items.length === 0;
      body.replaceChildren(...items.map((item) => h('tr', { testid: 'row', 'data-id': item.id },
        ...columns.map(([, cell]) => h('td', {}, cell(item) ?? '')),
        h('td', { class: 'row-buttons' }, ...(buttons ? buttons(item) : [])))));
    },
  };
}

/** A small button; `onclick` may be async (disabled while it runs). */
export function rowButton(text, onclick, kind = '', about = '') {
  // "Edit" alone says nothing to a screen reader walking the table: name the row too.
  const button = h('button', { type: 'button', class: `small ${kind}`.trim(), 'aria-label': about ? `${text} ${about}` : null }, text);
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await onclick();
    } catch (e) {
      toast(`${text}: ${e.message}`, 'error');
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

export const yesNo = (flag) => (flag ? 'Yes' : 'No');

// ---- calendar hours as text ------------------------------------------------------------------
//
// A day is written `09:00-12:00, 13:00-17:00` (empty: closed). Only the shape is checked here;
// the times themselves are the server's to judge (it names the offending one, `weekly.mon[0][1]`).

const INTERVAL = /^([^\s,-]+)\s*-\s*([^\s,-]+)$/;

/** `09:00-12:00, 13:00-17:00` -> [["09:00","12:00"],["13:00","17:00"]]; null when not that shape. */
export function parseIntervals(text) {
  const pairs = [];
  for (const part of text.split(',')) {
    const piece = part.trim();
    if (!piece) continue;
    const m = INTERVAL.exec(piece);
    if (!m) return null;
    pairs.push([m[1], m[2]]);
  }
  return pairs;
}

export const renderIntervals = (pairs) => (pairs || []).map(([start, end]) => `${start}-${end}`).join(', ');

// One override a line: `YYYY-MM-DD closed [label]` or `YYYY-MM-DD 09:00-13:00[, 14:00-16:00] [label]`.
const OVERRIDE_HOURS = /^\s*([^\s,-]+)\s*-\s*([^\s,-]+)/;

/** The overrides' text as the API's list; throws FieldProblem naming the line. */
export function parseOverrides(text, field = 'overrides') {
  const overrides = [];
  text.split('\n').forEach((line, index) => {
    const trimmed = line.trim();
    if (!trimmed) return;
    const wrong = () => new FieldProblem(field,
      `Line ${index + 1}: write "YYYY-MM-DD closed [label]" or "YYYY-MM-DD 09:00-13:00[, 14:00-17:00] [label]".`);
    const [, date, rest = ''] = /^(\S+)\s*(.*)$/.exec(trimmed) || [];
    if (!/^\d{4}-\d{1,2}-\d{1,2}$/.test(date)) throw wrong();
    const closed = /^closed\b\s*(.*)$/i.exec(rest);
    if (closed) {
      overrides.push(withLabel({ date, intervals: [] }, closed[1]));
      return;
    }
    const intervals = [];
    let left = rest;
    for (;;) {
      const m = OVERRIDE_HOURS.exec(left);
      if (!m) break;
      intervals.push([m[1], m[2]]);
      left = left.slice(m[0].length);
      const comma = /^\s*,/.exec(left);
      if (!comma) break;
      left = left.slice(comma[0].length);
    }
    if (!intervals.length) throw wrong();
    overrides.push(withLabel({ date, intervals }, left));
  });
  return overrides;
}

function withLabel(override, label) {
  const text = (label || '').trim();
  return text ? { ...override, label: text } : override;
}

export function renderOverrides(overrides) {
  return (overrides || []).map((o) => [o.date, o.intervals?.length ? renderIntervals(o.intervals) : 'closed', o.label]
    .filter(Boolean).join(' ')).join('\n');
}
