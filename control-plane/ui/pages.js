// The functions list, a function's page (state, charts, invoke form, manifest,
// versions with a diff, schedules, triggers and chains) and the warm pools.

import { call, fnPath } from './api.js';
import { badge, duration, h, json, notice, put, redraw, table, time } from './dom.js';
import { statsCharts } from './charts.js';
import { invokeForm } from './form.js';

/** Calls `draw` now and every `ms` until `signal` aborts; errors end up on the page. */
export function every(ms, signal, draw) {
  let timer = null;
  const tick = async () => {
    try {
      await draw();
    } finally {
      if (!signal.aborted) timer = setTimeout(tick, ms);
    }
  };
  signal.addEventListener('abort', () => clearTimeout(timer));
  return tick();
}

function errorRate(stats) {
  if (!stats || !stats.finished) return '—';
  return `${((100 * stats.errors) / stats.finished).toFixed(1)} %`;
}

function poolText(pool) {
  if (!pool) return '—';
  return `${pool.busy} busy / ${pool.idle} idle${pool.starting ? ` / ${pool.starting} starting` : ''}`;
}

/** `#/functions`: every function with its state; a search box filters by name. */
export async function functionsPage(main, params, signal) {
  const search = h('input', { id: 'search', type: 'search', value: params.q || '', autocomplete: 'off' });
  const body = h('div', { 'aria-live': 'polite' });
  put(main, h('h1', {}, 'Functions'),
    h('div', { class: 'toolbar' }, h('label', { for: 'search' }, 'Search'), search), body);
  let rows = [];
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const shown = rows.filter((row) => row.fn.name.toLowerCase().includes(q)
      || (row.fn.spec.description || '').toLowerCase().includes(q));
    if (!rows.length) return put(body, notice('No functions yet. Deploy one with gantry fn deploy.'));
    if (!shown.length) return put(body, notice('No function matches.'));
    redraw(body, table(null, ['Name', 'State', 'Version', 'Warm instances', 'Last outcome', 'Finished (1 h)', 'Error rate'],
      shown.map(({ fn, stats, pool }) => h('tr', { 'data-function': fn.name },
        h('td', {}, h('a', { href: `#/functions/${encodeURIComponent(fn.name)}` }, fn.name),
          fn.spec.description ? h('div', { class: 'muted small' }, fn.spec.description) : null),
        h('td', {}, badge(fn.spec.enabled === false ? 'disabled' : 'enabled')),
        h('td', {}, `v${fn.version}`),
        h('td', {}, fn.spec.warm ? poolText(pool) : h('span', { class: 'muted' }, 'cold')),
        h('td', {}, stats && stats.last ? [badge(stats.last.status), ' ', time(stats.last.atMs)] : '—'),
        h('td', { class: 'num' }, stats ? stats.finished : '—'),
        h('td', { class: 'num' }, errorRate(stats))))));
  };
  search.addEventListener('input', draw);
  await every(5000, signal, async () => {
    const { functions } = await call('/v1/functions', { signal });
    // One stats call per function (and the pool of warm ones); lists are short.
    rows = await Promise.all(functions.slice(0, 500).map(async (fn) => {
      const [stats, full] = await Promise.all([
        call(fnPath(fn.name, '/stats'), { signal }).catch(() => null),
        fn.spec.warm ? call(fnPath(fn.name), { signal }).catch(() => null) : null,
      ]);
      return { fn, stats, pool: full && full.pool };
    }));
    draw();
  });
}

/** A line diff (longest common subsequence) of two texts, as rows of a <pre>. */
function diff(before, after) {
  const a = before.split('\n');
  const b = after.split('\n');
  if (a.length * b.length > 4_000_000) return [h('span', {}, 'Too large to compare here.')];
  const lcs = Array.from({ length: a.length + 1 }, () => new Uint32Array(b.length + 1));
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) { out.push(h('span', {}, `  ${a[i]}\n`)); i++; j++; }
    else if (i < a.length && (j >= b.length || lcs[i + 1][j] >= lcs[i][j + 1])) { out.push(h('del', {}, `- ${a[i]}\n`)); i++; }
    else { out.push(h('ins', {}, `+ ${b[j]}\n`)); j++; }
  }
  return out;
}

function versionsSection(versions) {
  const pick = (id, label, selected) => h('div', { class: 'field inline' }, h('label', { for: id }, label),
    h('select', { id }, versions.map((v) => h('option', { value: v.version, selected: v.version === selected }, `v${v.version}`))));
  const newest = versions[versions.length - 1].version;
  const from = pick('diff-from', 'From', versions.length > 1 ? versions[versions.length - 2].version : newest);
  const to = pick('diff-to', 'To', newest);
  const out = h('pre', { class: 'diff', 'aria-live': 'polite' });
  const draw = () => {
    const spec = (n) => JSON.stringify(versions.find((v) => v.version === Number(n)).spec, null, 2);
    out.replaceChildren(...diff(spec(from.querySelector('select').value), spec(to.querySelector('select').value)));
  };
  from.addEventListener('change', draw);
  to.addEventListener('change', draw);
  draw();
  return h('section', { 'aria-labelledby': 'versions-h' }, h('h2', { id: 'versions-h' }, 'Versions'),
    table(null, ['Version', 'Stored', 'Hash'], versions.slice().reverse().map((v) =>
      h('tr', {}, h('td', {}, `v${v.version}`), h('td', {}, time(v.createdAt)), h('td', { class: 'mono small' }, v.contentHash)))),
    h('div', { class: 'toolbar' }, from, to), out);
}

function wiring(fn) {
  const spec = fn.spec;
  const parts = [];
  if (fn.schedules && fn.schedules.length) {
    parts.push(table('Schedules', ['Cron', 'Time zone', 'Catch up', 'Last tick', 'Next'], fn.schedules.map((sch) =>
      h('tr', {}, h('td', { class: 'mono' }, sch.cron), h('td', {}, sch.timezone), h('td', {}, sch.catchUp ? 'yes' : 'no'),
        h('td', {}, time(sch.lastTick)), h('td', {}, time((sch.next || sch.nextFires || [])[0]))))));
  }
  if (spec.triggers && spec.triggers.length) {
    parts.push(table('Triggers', ['Trigger'], spec.triggers.map((t) => h('tr', {}, h('td', { class: 'mono' }, JSON.stringify(t))))));
  }
  if (spec.chains && spec.chains.length) {
    parts.push(table('Chains', ['Target', 'Condition', 'Input'], spec.chains.map((c) => h('tr', {},
      h('td', {}, h('a', { href: `#/functions/${encodeURIComponent(c.target)}` }, c.target)),
      h('td', { class: 'mono' }, typeof c.condition === 'string' ? c.condition : JSON.stringify(c.condition ?? 'on_success')),
      h('td', { class: 'mono small' }, c.input === undefined ? 'output' : JSON.stringify(c.input))))));
  }
  return h('section', { 'aria-labelledby': 'wiring-h' }, h('h2', { id: 'wiring-h' }, 'Schedules, triggers and chains'),
    parts.length ? parts : notice('None.'));
}

function result(answer) {
  return h('div', { class: 'result', 'data-status': answer.status },
    h('p', {}, badge(answer.status), ' execution ',
      h('a', { href: `#/executions/${answer.executionId}` }, answer.executionId)),
    answer.error ? h('p', { class: 'error' }, `${answer.error.code}: ${answer.error.message}`) : null,
    answer.output !== undefined && answer.output !== null ? json(answer.output) : null);
}

/** `#/functions/{name}`. */
export async function functionPage(main, params, signal) {
  const name = params.id;
  const [fn, { versions }] = await Promise.all([
    call(fnPath(name), { signal }), call(fnPath(name, '/versions'), { signal })]);
  const spec = fn.spec;
  const charts = h('div', { 'aria-live': 'off' }, notice('Loading the last hour…'));
  const answer = h('div', { 'aria-live': 'polite', id: 'invoke-result' });
  const form = invokeForm(spec.input_schema, async (input) => {
    put(answer, notice('Running…'));
    try {
      put(answer, result(await call(fnPath(name, ':invoke'), { method: 'POST', body: input, signal })));
    } catch (err) {
      if (err.name !== 'AbortError') put(answer, notice(`Refused by the server: ${err.message}`, 'error'));
    }
  });
  put(main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/functions' }, 'Functions'), ' / ', name),
    h('h1', {}, name, ' ', badge(spec.enabled === false ? 'disabled' : 'enabled')),
    spec.description ? h('p', {}, spec.description) : null,
    h('dl', { class: 'facts' },
      h('dt', {}, 'Version'), h('dd', {}, `v${fn.version} (${versions.length} stored)`),
      h('dt', {}, 'Mode'), h('dd', {}, spec.mode || 'STDIO'),
      h('dt', {}, 'Warm pool'), h('dd', {}, fn.pool ? [poolText(fn.pool), ' · ', h('a', { href: '#/pools' }, 'instances')] : 'none (cold)'),
      h('dt', {}, 'Timeout'), h('dd', {}, spec.resources && spec.resources.timeout_ms ? duration(spec.resources.timeout_ms) : 'the server default'),
      h('dt', {}, 'Executions'), h('dd', {}, h('a', { href: `#/executions?function=${encodeURIComponent(name)}` }, 'list'))),
    h('section', { 'aria-labelledby': 'charts-h' }, h('h2', { id: 'charts-h' }, 'Last hour on this node'), charts),
    h('section', { 'aria-labelledby': 'invoke-h' }, h('h2', { id: 'invoke-h' }, 'Invoke'),
      spec.input_schema ? null : notice('No input_schema: the input is free JSON.'), form, answer),
    h('section', { 'aria-labelledby': 'manifest-h' }, h('h2', { id: 'manifest-h' }, 'Manifest'), json(spec)),
    versionsSection(versions),
    wiring(fn));
  await every(10000, signal, async () => {
    put(charts, statsCharts(await call(fnPath(name, '/stats'), { signal })));
  });
}

function age(from) {
  return from ? duration(Date.now() - new Date(from).getTime()) : '—';
}

/** `#/pools`: the instances of every warm function on this node. */
export async function poolsPage(main, params, signal) {
  const body = h('div', { 'aria-live': 'polite' });
  put(main, h('h1', {}, 'Warm pools'), body);
  await every(3000, signal, async () => {
    const { functions } = await call('/v1/functions', { signal });
    const warm = functions.filter((fn) => fn.spec.warm);
    const pools = await Promise.all(warm.map((fn) => call(fnPath(fn.name), { signal })));
    if (!pools.length) return put(body, notice('No warm functions. Give a function a warm section to keep instances running.'));
    redraw(body, pools.map((fn) => {
      const pool = fn.pool || { instances: [] };
      return h('section', { class: 'pool', 'data-function': fn.name },
        h('h2', {}, h('a', { href: `#/functions/${encodeURIComponent(fn.name)}` }, fn.name)),
        h('p', { class: 'muted' }, `min ${pool.minInstances ?? '—'}, max ${pool.maxInstances ?? '—'}, `,
          `${pool.inFlight ?? 0} calls running, ${pool.queued ?? 0} waiting, ${pool.coldStarts ?? 0} cold starts`),
        pool.instances.length
          ? table(null, ['Instance', 'Version', 'State', 'Calls running', 'Calls taken', 'Age', 'Last used'],
            pool.instances.map((i) => h('tr', { 'data-instance': i.id },
              h('td', { class: 'mono small' }, i.id), h('td', {}, `v${i.version}`), h('td', {}, badge(i.state)),
              h('td', { class: 'num' }, i.inFlight), h('td', { class: 'num' }, i.invocations),
              h('td', {}, age(i.startedAt)), h('td', {}, time(i.lastUsedAt)))))
          : notice('No instance running.'));
    }));
  });
}
