// Executions: the filtered, live list; one execution with its payloads, timings and
// live logs (server-sent events); and a chain tree drawn as an SVG graph.

import { call, follow, withQuery } from './api.js';
import { badge, duration, h, json, notice, put, redraw, s, shortId, table, time } from './dom.js';
import { every } from './pages.js';

const STATUSES = ['queued', 'starting', 'running', 'success', 'error', 'timeout', 'cancelled'];
const TRIGGERS = ['api', 'event', 'chain', 'schedule', 'retry'];
const WINDOWS = { '': 'any time', 15: 'last 15 minutes', 60: 'last hour', 1440: 'last day' };
const TERMINAL = new Set(['success', 'error', 'timeout', 'cancelled']);

function select(id, label, options, value) {
  return h('div', { class: 'field inline' }, h('label', { for: id }, label),
    h('select', { id, name: id },
      Object.entries(options).map(([v, text]) => h('option', { value: v, selected: v === (value || '') }, text))));
}

/** `#/executions?function=&status=&minutes=&trigger=`: newest first, refreshed every 2 s. */
export async function executionsPage(main, params, signal) {
  const { functions } = await call('/v1/functions', { signal });
  const names = Object.fromEntries([['', 'all'], ...functions.map((fn) => [fn.name, fn.name])]);
  const form = h('form', { class: 'toolbar', role: 'search', 'aria-label': 'Filter executions' },
    select('function', 'Function', names, params.function),
    select('status', 'Status', Object.fromEntries([['', 'all'], ...STATUSES.map((x) => [x, x])]), params.status),
    select('trigger', 'Trigger', Object.fromEntries([['', 'all'], ...TRIGGERS.map((x) => [x, x])]), params.trigger),
    select('minutes', 'Created', WINDOWS, params.minutes));
  form.addEventListener('change', () => {
    const query = new URLSearchParams();
    for (const field of form.querySelectorAll('select')) if (field.value) query.set(field.name, field.value);
    history.replaceState(null, '', `#/executions${query.toString() ? `?${query}` : ''}`);
    for (const field of form.querySelectorAll('select')) params[field.name] = field.value;
    refresh();
  });
  form.addEventListener('submit', (event) => event.preventDefault());
  const body = h('div', {});
  const updated = h('p', { class: 'muted small', 'aria-live': 'off' });
  put(main, h('h1', {}, 'Executions'), form, updated, body);
  const refresh = async () => {
    const since = params.minutes ? Date.now() - Number(params.minutes) * 60000 : undefined;
    const page = await call(withQuery('/v1/executions', {
      function: params.function, status: params.status, trigger: params.trigger, since, limit: 200,
    }), { signal });
    const shown = page.executions;
    updated.textContent = `Updated ${new Date().toLocaleTimeString()} · live`;
    updated.dataset.refreshes = Number(updated.dataset.refreshes || 0) + 1;
    if (!shown.length) return put(body, notice('No executions match.'));
    redraw(body, table(null, ['Execution', 'Function', 'Status', 'Trigger', 'Created', 'Duration', 'Attempt'],
      shown.map((x) => h('tr', { 'data-execution': x.id },
        h('td', { class: 'mono small' }, h('a', { href: `#/executions/${x.id}`, title: x.id, 'aria-label': `execution ${x.id}` }, shortId(x.id))),
        h('td', {}, h('a', { href: `#/functions/${encodeURIComponent(x.function)}` }, x.function)),
        h('td', {}, badge(x.status), x.deadLetter ? ' dead letter' : ''),
        h('td', {}, x.trigger), h('td', {}, time(x.createdAt)),
        h('td', { class: 'num' }, duration(x.durationMs)), h('td', { class: 'num' }, x.attempt)))));
  };
  await every(2000, signal, refresh);
}

function facts(x) {
  const link = (id) => (id ? h('a', { href: `#/executions/${id}`, class: 'mono small' }, id) : '—');
  const pairs = [
    ['Function', h('a', { href: `#/functions/${encodeURIComponent(x.function)}` }, `${x.function} v${x.version}`)],
    ['Trigger', x.trigger], ['Attempt', x.attempt], ['Created', time(x.createdAt)],
    ['Started', time(x.startedAt)], ['Finished', time(x.finishedAt)], ['Duration', duration(x.durationMs)],
    ['Cold start', x.coldStart === undefined || x.coldStart === null ? '—' : x.coldStart ? 'yes' : 'no'],
    ['Instance', x.instanceId || '—'], ['Exit code', x.exitCode ?? '—'], ['Parent', link(x.parentId)],
    ['Root', link(x.rootId)], ['Trace', x.traceId || '—'], ['Dead letter', x.deadLetter ? 'yes' : 'no'],
  ];
  return h('dl', { class: 'facts' }, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

/** `#/executions/{id}`: the record, refreshed until it ends, and its logs as they come. */
export async function executionPage(main, params, signal) {
  const id = params.id;
  const head = h('div', {});
  const logs = h('pre', { class: 'logs', id: 'logs', tabindex: '0', 'aria-label': 'Log lines' });
  const logState = h('p', { class: 'muted small', 'aria-live': 'polite' }, 'Following the logs…');
  put(main, h('p', { class: 'crumbs' }, h('a', { href: '#/executions' }, 'Executions'), ' / ', shortId(id)),
    head, h('section', { 'aria-labelledby': 'logs-h' }, h('h2', { id: 'logs-h' }, 'Logs'), logState, logs));
  let done = false;
  const draw = async () => {
    if (done) return;
    const x = await call(`/v1/executions/${id}`, { signal });
    done = TERMINAL.has(x.status);
    put(head, h('h1', {}, 'Execution ', badge(x.status)),
      h('p', { class: 'mono small' }, x.id),
      h('p', {}, h('a', { href: `#/executions/${x.rootId || x.id}/tree` }, 'Chain tree'), ' · ',
        h('a', { href: `#/executions?function=${encodeURIComponent(x.function)}` }, 'More of this function')),
      facts(x),
      x.error ? h('section', {}, h('h2', {}, 'Error'), h('p', { class: 'error' }, `${x.error.code}: ${x.error.message}`)) : null,
      h('section', {}, h('h2', {}, 'Input'), json(x.input ?? null)),
      h('section', {}, h('h2', {}, 'Output'), x.output === undefined || x.output === null ? notice('None.') : json(x.output)));
  };
  await draw();
  // The record is read again until it is final; the log stream runs beside it.
  every(1000, signal, draw).catch(() => {});
  let count = 0;
  follow(`/v1/executions/${id}/logs?follow=true`, (type, data) => {
    if (type === 'log') {
      const line = JSON.parse(data);
      logs.append(h('span', { class: `line ${line.stream}` }, `${new Date(line.time).toLocaleTimeString()} ${line.line}\n`));
      count += 1;
      logs.scrollTop = logs.scrollHeight;
    } else if (type === 'end') {
      logState.textContent = `${count} line${count === 1 ? '' : 's'}; the execution ended (${JSON.parse(data).status}).`;
      done = false;
      draw().catch(() => {});
    }
  }, signal).catch((err) => {
    if (err.name !== 'AbortError') logState.textContent = `The log stream stopped: ${err.message}`;
  });
}

const NODE_W = 170;
const NODE_H = 44;
const GAP_X = 40;
const GAP_Y = 14;

/** Places each node: x by depth, y by the order of the leaves under it. */
function layout(root) {
  const nodes = [];
  const edges = [];
  let row = 0;
  const place = (node, level) => {
    const kids = node.children || [];
    const ys = kids.map((child) => place(child, level + 1));
    const y = ys.length ? (ys[0] + ys[ys.length - 1]) / 2 : row++ * (NODE_H + GAP_Y);
    const at = { node, x: level * (NODE_W + GAP_X), y };
    nodes.push(at);
    for (const childY of ys) edges.push({ from: at, toY: childY, toX: (level + 1) * (NODE_W + GAP_X) });
    return y;
  };
  place(root, 0);
  return { nodes, edges, rows: row };
}

/** `#/executions/{id}/tree`: the chain tree under the execution. */
export async function treePage(main, params, signal) {
  let final = false;
  await every(2000, signal, async () => {
    if (final) return;
    const tree = await call(`/v1/executions/${params.id}/chain`, { signal });
    final = drawTree(main, params, tree);
  });
}

/** Draws `tree`; answers whether every node in it is final (nothing left to watch). */
function drawTree(main, params, tree) {
  const { nodes, edges, rows } = layout(tree);
  const depth = Math.max(...nodes.map((n) => n.x)) + NODE_W;
  const height = Math.max(rows, 1) * (NODE_H + GAP_Y);
  const svg = s('svg', {
    viewBox: `-2 -2 ${depth + 4} ${height + 4}`, width: depth + 4, class: 'tree', role: 'group',
    'aria-label': `Chain tree of ${nodes.length} executions`,
  });
  for (const e of edges) {
    const x1 = e.from.x + NODE_W;
    const y1 = e.from.y + NODE_H / 2;
    const y2 = e.toY + NODE_H / 2;
    const mid = x1 + GAP_X / 2;
    svg.append(s('path', { d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${e.toX},${y2}`, class: 'edge' }));
  }
  for (const { node, x, y } of nodes) {
    svg.append(s('a', { href: `#/executions/${node.id}`, class: `node ${node.status}`, 'data-execution': node.id },
      s('title', {}, `${node.function}: ${node.status} (${node.trigger})`),
      s('rect', { x, y, width: NODE_W, height: NODE_H, rx: 6 }),
      s('text', { x: x + 10, y: y + 18, class: 'fn' }, node.function.length > 20 ? `${node.function.slice(0, 19)}…` : node.function),
      s('text', { x: x + 10, y: y + 34, class: 'st' }, `${node.status} · ${node.trigger}${node.attempt > 1 ? ` · try ${node.attempt}` : ''}`)));
  }
  const list = (node) => h('li', {}, h('a', { href: `#/executions/${node.id}` }, node.function), ' ', badge(node.status),
    node.error ? h('span', { class: 'muted small' }, ` ${node.error.code}`) : null,
    node.children && node.children.length ? h('ul', {}, node.children.map(list)) : null);
  put(main, h('p', { class: 'crumbs' }, h('a', { href: `#/executions/${params.id}` }, 'Execution'), ' / chain tree'),
    h('h1', {}, 'Chain tree'),
    h('p', { class: 'muted' }, `${nodes.length} executions${tree.nextCursor ? ' (first page; the tree has more)' : ''}. Select one to open it.`),
    h('div', { class: 'scroll tree-wrap' }, svg),
    h('details', {}, h('summary', {}, 'As a list'), h('ul', { class: 'tree-list' }, list(tree))));
  return nodes.every(({ node }) => TERMINAL.has(node.status));
}

