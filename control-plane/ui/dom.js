// DOM building without innerHTML (every text is a text node, so nothing the API
// answers is ever parsed as markup), and the formatting the pages share.

const SVG = 'http://www.w3.org/2000/svg';

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else if (key === 'text') {
      node.textContent = value;
    } else {
      node.setAttribute(key, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: h('a', {href: '#/x'}, 'text', child...). */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG, tag), attrs, children);
}

/** Pretty JSON in a <pre>. */
export function json(value) {
  return h('pre', { class: 'json' }, JSON.stringify(value, null, 2));
}

/** A status word as a badge. */
export function badge(status) {
  return h('span', { class: `badge ${status || 'none'}` }, status || '—');
}

/** A time as local date and time, with the exact instant on hover. */
export function time(text) {
  if (!text) return '—';
  const date = new Date(text);
  return h('time', { datetime: date.toISOString(), title: date.toISOString() }, date.toLocaleString());
}

/** Milliseconds as a short duration. */
export function duration(ms) {
  if (ms === undefined || ms === null) return '—';
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3600000) return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
  return `${(ms / 3600000).toFixed(1)} h`;
}

/** A table with a header row, wrapped so it scrolls sideways on a narrow screen. */
export function table(caption, headers, rows) {
  return h('div', { class: 'scroll' },
    h('table', {},
      caption ? h('caption', {}, caption) : null,
      h('thead', {}, h('tr', {}, headers.map((title) => h('th', { scope: 'col' }, title)))),
      h('tbody', {}, rows)));
}

/** A message shown in place of content. */
export function notice(text, kind = 'muted') {
  return h('p', { class: kind, role: kind === 'error' ? 'alert' : null }, text);
}

/** Replaces the children of `node`. */
export function put(node, ...children) {
  node.replaceChildren();
  fill(node, {}, children);
}

/** The distinguishing end of an execution id (ids are UUIDv7: their start is a time). */
export function shortId(id) {
  return `…${id.slice(-12)}`;
}

const KEYS = ['data-execution', 'data-function', 'data-instance'];
const FOCUSABLE = 'a, button, input, select, textarea';

/**
 * Like `put`, for content refreshed on a timer: when the focus was on a link of a
 * row, it is put back on the same link of the same row (by its id), so refreshing
 * never throws a keyboard user back to the top.
 */
export function redraw(node, ...children) {
  const active = document.activeElement;
  let again = null;
  if (active && node.contains(active)) {
    const row = active.closest(KEYS.map((key) => `[${key}]`).join(','));
    const key = row && KEYS.find((k) => row.hasAttribute(k));
    if (key) {
      const index = [...row.querySelectorAll(FOCUSABLE)].indexOf(active);
      again = () => {
        const same = node.querySelector(`[${key}="${CSS.escape(row.getAttribute(key))}"]`);
        const target = same && same.querySelectorAll(FOCUSABLE)[index];
        if (target) target.focus({ preventScroll: true });
      };
    }
  }
  put(node, ...children);
  if (again) again();
}
