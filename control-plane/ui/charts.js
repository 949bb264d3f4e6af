// Line charts of a function's last hour (GET /v1/functions/{name}/stats), drawn as
// SVG by hand: one minute per point, oldest on the left.

import { h, s } from './dom.js';

const W = 320;
const H = 120;
const PAD = { left: 36, right: 8, top: 10, bottom: 20 };

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

function label(value) {
  if (value >= 1000) return `${+(value / 1000).toFixed(1)}k`;
  return `${+value.toFixed(value < 10 ? 1 : 0)}`;
}

/**
 * A chart of `lines` ([{name, cls, values}], values null where no data) over the
 * minutes; `unit` names the y axis; `summary` is read by screen readers and shown
 * below.
 */
function chart(title, unit, lines, summary) {
  const all = lines.flatMap((line) => line.values).filter((v) => v !== null && v !== undefined);
  const max = niceMax(Math.max(0, ...all));
  const n = lines[0].values.length;
  const x = (i) => PAD.left + (i * (W - PAD.left - PAD.right)) / Math.max(1, n - 1);
  const y = (v) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title}: ${summary}`, class: 'chart',
  });
  for (const v of [0, max / 2, max]) {
    svg.append(s('line', { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(s('text', { x: PAD.left - 4, y: y(v) + 4, class: 'tick', 'text-anchor': 'end' }, label(v)));
  }
  svg.append(s('text', { x: PAD.left, y: H - 4, class: 'tick' }, '−60 min'));
  svg.append(s('text', { x: W - PAD.right, y: H - 4, class: 'tick', 'text-anchor': 'end' }, 'now'));
  for (const line of lines) {
    let d = '';
    let pen = false;
    line.values.forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    if (d) svg.append(s('path', { d, class: `series ${line.cls}` }));
    // Single points (a minute between gaps) would not show as a line.
    line.values.forEach((v, i) => {
      const before = line.values[i - 1];
      const after = line.values[i + 1];
      if (v !== null && v !== undefined && (before === null || before === undefined)
        && (after === null || after === undefined)) {
        svg.append(s('circle', { cx: x(i), cy: y(v), r: 2, class: `dot ${line.cls}` }));
      }
    });
  }
  const legend = lines.length > 1
    ? h('ul', { class: 'legend' }, lines.map((line) => h('li', { class: line.cls }, line.name)))
    : null;
  return h('figure', { class: 'chart-card', 'data-points': all.filter((v) => v > 0).length },
    h('figcaption', {}, `${title} `, h('span', { class: 'muted' }, `(${unit})`)),
    svg, legend, h('p', { class: 'muted small' }, summary));
}

/** The four charts of a stats answer. */
export function statsCharts(stats) {
  const minutes = stats.minutes;
  const finished = minutes.map((m) => m.finished);
  const errorRate = minutes.map((m) => (m.finished ? (100 * m.errors) / m.finished : null));
  const rate = stats.finished ? ((100 * stats.errors) / stats.finished).toFixed(1) : '0';
  const ms = (v) => (v === null || v === undefined ? '—' : `${+v.toPrecision(3)} ms`);
  return h('div', { class: 'charts', 'data-finished': stats.finished },
    chart('Throughput', 'executions per minute', [{ name: 'finished', cls: 'a', values: finished }],
      `${stats.finished} finished in the last hour`),
    chart('Error rate', '% of executions', [{ name: 'errors', cls: 'bad', values: errorRate }],
      `${stats.errors} failed (${rate} %)`),
    chart('Latency', 'ms, histogram estimate', [
      { name: 'p50', cls: 'a', values: minutes.map((m) => m.p50Ms ?? null) },
      { name: 'p99', cls: 'b', values: minutes.map((m) => m.p99Ms ?? null) },
    ], `p50 ${ms(stats.p50Ms)}, p99 ${ms(stats.p99Ms)} over the hour`),
    chart('Cold starts', 'per minute', [{ name: 'cold starts', cls: 'b', values: minutes.map((m) => m.coldStarts) }],
      `${stats.coldStarts} in the last hour`));
}
