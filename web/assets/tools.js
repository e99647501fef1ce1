// The agent's tools beside the console's live state: canned replies offered while typing `/`,
// the queue of waiting conversations with Take, message search, and read-only transcripts of
// earlier conversations (from search results and the contact's history).
import { api, contactName, fmtTime, h, toast } from '/assets/api.js';

const enc = encodeURIComponent;

// ---- canned replies ----------------------------------------------------------------------

/**
 * Offers the canned replies of conversation `cid` under `input` while its text is `/word`;
 * picking one (click, or Enter / Tab on the highlighted one) fills the input with its text,
 * placeholders already filled in by the server. Answers the list node to place under the input.
 */
export function cannedPicker(input, cid) {
  const list = h('ul', { class: 'canned', testid: 'canned-list', hidden: true });
  let items = [];
  let active = 0;
  let asked = 0;
  const hide = () => { list.hidden = true; items = []; };
  const choose = (item) => {
    input.value = item.text;
    input.dispatchEvent(new Event('input'));
    hide();
    input.focus();
  };
  const draw = () => {
    list.hidden = !items.length;
    list.replaceChildren(...items.map((item, i) => h('li', {
      class: `canned-option${i === active ? ' active' : ''}`, testid: 'canned-option',
      'data-shortcut': item.shortcut, onmousedown: (ev) => { ev.preventDefault(); choose(item); },
    }, h('strong', {}, `/${item.shortcut}`), ' ', h('span', { class: 'sub' }, item.text))));
  };
  input.addEventListener('input', async () => {
    const typed = /^\/([a-z0-9_-]*)$/i.exec(input.value.trim());
    if (!typed) return hide();
    const ask = ++asked;
    try {
      const page = await api('GET', `/api/v1/conversations/${enc(cid)}/canned-replies?q=${enc(typed[1])}`);
      if (ask !== asked) return undefined;
      items = page.items || [];
      active = 0;
      return draw();
    } catch (e) {
      return toast(`Canned replies: ${e.message}`, 'error');
    }
  });
  // Runs before the console's own Enter-sends handler (registered on the same input later).
  input.addEventListener('keydown', (ev) => {
    if (list.hidden || !items.length) return;
    if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      ev.preventDefault();
      active = (active + (ev.key === 'ArrowDown' ? 1 : items.length - 1)) % items.length;
      draw();
    } else if (ev.key === 'Enter' || ev.key === 'Tab') {
      ev.preventDefault();
      ev.stopImmediatePropagation();
      choose(items[active]);
    } else if (ev.key === 'Escape') {
      hide();
    }
  });
  input.addEventListener('blur', () => setTimeout(hide, 150));
  return list;
}

// ---- transcripts -------------------------------------------------------------------------

/** A read-only transcript of conversation `cid` in an overlay, `highlight` marked. */
export async function showTranscript(cid, title, highlight) {
  document.getElementById('transcript')?.remove();
  const body = h('div', { class: 'transcript-body' }, h('p', { class: 'empty' }, 'Loading…'));
  const close = () => overlay.remove();
  const overlay = h('div', { id: 'transcript', class: 'overlay', testid: 'transcript', onclick: (ev) => { if (ev.target === overlay) close(); } },
    h('div', { class: 'card transcript' },
      h('div', { class: 'row' }, h('strong', {}, title), h('button', { class: 'ghost', testid: 'transcript-close', onclick: close }, 'Close')),
      body));
  document.body.append(overlay);
  try {
    const page = await api('GET', `/api/v1/conversations/${enc(cid)}/messages?limit=500`);
    body.replaceChildren(...(page.items || []).map((m) => h('div', {
      class: `msg ${m.direction === 'out' ? 'out' : 'in'}${m.id === highlight ? ' found' : ''}`,
      testid: 'transcript-message', 'data-message-id': m.id,
    }, h('div', { class: 'msg-text' }, m.text || `[${m.kind}]`), h('div', { class: 'msg-meta' }, fmtTime(m.timestamp)))));
    body.querySelector('.found')?.scrollIntoView({ block: 'center' });
  } catch (e) {
    body.replaceChildren(h('p', { class: 'empty' }, e.message));
  }
}

// ---- contact history ---------------------------------------------------------------------

/** The contact's conversations the agent may see, newest first, each opening its transcript. */
export function contactHistory(contact, currentId) {
  const list = h('ul', { class: 'history', testid: 'contact-history' }, h('li', { class: 'empty' }, 'Loading…'));
  if (!contact?.id) {
    list.replaceChildren(h('li', { class: 'empty' }, 'No earlier conversations'));
    return list;
  }
  api('GET', `/api/v1/contacts/${enc(contact.id)}`).then((found) => {
    const earlier = (found.conversations || []).filter((c) => c.id !== currentId);
    list.replaceChildren(...(earlier.length ? earlier.map((c) => h('li', {
      class: 'history-item', testid: 'history-item', 'data-conversation-id': c.id, tabindex: 0,
      onclick: () => showTranscript(c.id, `${contactName(found.contact)} · ${fmtTime(c.created_at)}`),
    }, h('span', {}, fmtTime(c.created_at)), ' ', h('span', { class: `badge status-${c.status}` }, c.status)))
      : [h('li', { class: 'empty' }, 'No earlier conversations')]));
  }).catch((e) => list.replaceChildren(h('li', { class: 'empty' }, e.message)));
  return list;
}

// ---- queue -------------------------------------------------------------------------------

/**
 * The waiting conversations of the agent's teams, each with Take (the `pick` frame); `send`
 * sends a frame. Answers `{node, refresh}`.
 */
export function queuePanel(send) {
  const list = h('ul', { id: 'queue', class: 'list', testid: 'queue' });
  const count = h('span', { class: 'count' });
  let loading = false;
  const refresh = async () => {
    if (loading) return;
    loading = true;
    try {
      const page = await api('GET', '/api/v1/conversations?status=waiting&limit=100');
      const items = page.items || [];
      count.textContent = items.length || '';
      list.replaceChildren(...(items.length ? items.map((c) => h('li', { class: 'queue-item', testid: 'queue-item', 'data-conversation-id': c.id },
        h('div', { class: 'row' },
          h('strong', { class: 'name' }, contactName(c.contact)),
          h('button', { class: 'primary small', testid: 'queue-take', onclick: () => send({ type: 'pick', conversation_id: c.id }) }, 'Take')),
        h('div', { class: 'sub' }, `waiting since ${fmtTime(c.created_at)}`)))
        : [h('li', { class: 'empty' }, 'Nobody is waiting')]));
    } catch (e) {
      list.replaceChildren(h('li', { class: 'empty' }, e.message));
    } finally {
      loading = false;
    }
  };
  return { node: [h('h2', {}, 'Queue ', count), list], refresh };
}

// ---- search ------------------------------------------------------------------------------

/** A search box over the messages the agent may see; a result opens its transcript. */
export function searchPanel() {
  const results = h('ul', { class: 'list results', testid: 'search-results' });
  const input = h('input', {
    type: 'search', testid: 'search-input', placeholder: 'Search messages + Enter',
    onkeydown: async (ev) => {
      if (ev.key !== 'Enter') return;
      ev.preventDefault();
      const q = input.value.trim();
      if (!q) return results.replaceChildren();
      try {
        const page = await api('GET', `/api/v1/search?q=${enc(q)}&limit=20`);
        const items = page.items || [];
        results.replaceChildren(...(items.length ? items.map((hit) => h('li', {
          class: 'search-result', testid: 'search-result', 'data-conversation-id': hit.conversation_id, tabindex: 0,
          onclick: () => showTranscript(hit.conversation_id, `Found ${fmtTime(hit.timestamp)}`, hit.message_id),
        }, h('div', { class: 'preview' }, hit.text || ''), h('div', { class: 'sub' }, fmtTime(hit.timestamp))))
          : [h('li', { class: 'empty' }, 'Nothing found')]));
      } catch (e) {
        toast(e.message, 'error');
      }
    },
  });
  return [h('div', { class: 'search' }, input), results];
}
