// The console's shell: sign-in, the hash routes and the page lifecycle. Each page is
// a function `(main, params, signal)` that draws into <main> and stops its timers and
// streams when `signal` aborts (on the next route).

import { call, signIn, signOut, takeTokenFromAddress, token } from './api.js';
import { h, notice, put } from './dom.js';
import { functionsPage, functionPage, poolsPage } from './pages.js';
import { executionsPage, executionPage, treePage } from './execution.js';

const main = document.getElementById('main');
const signout = document.getElementById('signout');
let current = null;
let returnTo = '#/functions';

const ROUTES = [
  [/^#\/functions\/?$/, () => functionsPage],
  [/^#\/functions\/([^/?]+)$/, () => functionPage],
  [/^#\/executions\/?$/, () => executionsPage],
  [/^#\/executions\/([0-9a-f-]+)$/, () => executionPage],
  [/^#\/executions\/([0-9a-f-]+)\/tree$/, () => treePage],
  [/^#\/pools\/?$/, () => poolsPage],
];

function signInPage(target) {
  const input = h('input', {
    id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true,
    spellcheck: 'false', 'aria-describedby': 'token-help',
  });
  const message = h('p', { role: 'alert', class: 'error', hidden: true });
  const form = h('form', { class: 'card narrow', novalidate: true },
    h('h1', {}, 'Sign in'),
    h('label', { for: 'token' }, 'API token'),
    input,
    h('p', { id: 'token-help', class: 'muted' },
      'A token made with ', h('code', {}, 'gantry token create'),
      ', or the admin token in the data directory. It is kept in this tab only.'),
    message,
    h('button', { type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!input.value.trim()) {
      message.hidden = false;
      message.textContent = 'Enter a token.';
      input.focus();
      return;
    }
    signIn(input.value);
    try {
      await call('/v1/functions');
      location.hash = target;
      route();
    } catch (err) {
      signOut();
      message.hidden = false;
      message.textContent = err.status === 401 || err.status === 403
        ? `The server refused this token: ${err.message}`
        : err.message;
      input.focus();
    }
  });
  put(main, form);
  input.focus();
}

function mark(section) {
  for (const link of document.querySelectorAll('nav a')) {
    if (link.dataset.section === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

/** Draws the page the address names. */
function route() {
  if (current) current.abort();
  current = new AbortController();
  const hash = location.hash || '#/functions';
  signout.hidden = !token();
  if (hash.startsWith('#/signin')) {
    mark('');
    signInPage(returnTo);
    return;
  }
  const [path, query] = hash.split('?');
  for (const [pattern, page] of ROUTES) {
    const match = pattern.exec(path);
    if (!match) continue;
    mark(path.split('/')[1]);
    const params = Object.fromEntries(new URLSearchParams(query || ''));
    params.id = match[1] ? decodeURIComponent(match[1]) : undefined;
    const signal = current.signal;
    Promise.resolve(page()(main, params, signal)).catch((err) => {
      if (signal.aborted || err.name === 'AbortError') return;
      if (err.status === 401) return;
      put(main, notice(err.message, 'error'));
    });
    main.focus({ preventScroll: true });
    return;
  }
  put(main, h('h1', {}, 'Not found'), notice('No page here.'), h('a', { href: '#/functions' }, 'Functions'));
}

window.addEventListener('gantry:unauthorized', () => {
  if (location.hash.startsWith('#/signin')) return;
  returnTo = location.hash || '#/functions';
  signOut();
  location.hash = '#/signin';
});
window.addEventListener('hashchange', route);
signout.addEventListener('click', () => {
  signOut();
  returnTo = '#/functions';
  location.hash = '#/signin';
});
takeTokenFromAddress();
route();
