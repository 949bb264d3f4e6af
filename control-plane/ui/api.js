// The API client: every call the console makes goes through `call`, with the token
// in an Authorization header (never a cookie, so another site's page cannot make the
// browser send it), to this page's own origin.

const KEY = 'gantry-token';

/** An error answer of the API (or of the network). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The token of this tab, if signed in. */
export function token() {
  return sessionStorage.getItem(KEY);
}

/** Keeps `value` as this tab's token (session storage: gone when the tab closes). */
export function signIn(value) {
  sessionStorage.setItem(KEY, value.trim());
}

/** Forgets the token. */
export function signOut() {
  sessionStorage.removeItem(KEY);
}

/**
 * Takes a token from `#token=...` (as `gantry serve` prints the console's address),
 * then removes it from the address bar and the history.
 */
export function takeTokenFromAddress() {
  const match = /^#token=([^&]*)/.exec(location.hash);
  if (!match) return false;
  signIn(decodeURIComponent(match[1]));
  history.replaceState(null, '', `${location.pathname}#/functions`);
  return true;
}

function headers(extra) {
  const out = { Accept: 'application/json', ...extra };
  const value = token();
  if (value) out.Authorization = `Bearer ${value}`;
  return out;
}

async function failure(response) {
  let code = 'HTTP_' + response.status;
  let message = response.statusText || `HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // Not JSON: keep the status line.
  }
  if (response.status === 401) {
    window.dispatchEvent(new CustomEvent('gantry:unauthorized'));
  }
  return new ApiError(response.status, code, message);
}

/** Calls `path` of the API; answers the JSON body, or throws an ApiError. */
export async function call(path, { method = 'GET', body, signal } = {}) {
  const init = { method, signal, headers: headers(), credentials: 'omit', cache: 'no-store' };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'NETWORK', `the server did not answer: ${err.message}`);
  }
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return null;
  return response.json();
}

/** `path` with a query string from the non-empty entries of `query`. */
export function withQuery(path, query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') params.set(key, value);
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/** The path of a function's own resource (names are URL-safe, but encode anyway). */
export function fnPath(name, rest = '') {
  return `/v1/functions/${encodeURIComponent(name)}${rest}`;
}

/**
 * Reads the server-sent events of `path` until the stream ends or `signal` aborts,
 * calling `onEvent(type, data)` for each. EventSource cannot send an Authorization
 * header, so the stream is read with fetch.
 */
export async function follow(path, onEvent, signal) {
  const response = await fetch(path, {
    headers: headers({ Accept: 'text/event-stream' }),
    credentials: 'omit',
    cache: 'no-store',
    signal,
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) type = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) onEvent(type, data.join('\n'));
    }
    // A line longer than any event the server sends means garbage: stop reading.
    if (buffer.length > 4 * 1024 * 1024) throw new ApiError(0, 'STREAM', 'event too large');
  }
}
