// Unit tests for runtime.js (node:assert only; run in the image by
// scripts/check-runtime-images.sh, or on the host: node runtimes/node/test_runtime.js).
'use strict';
const assert = require('assert');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-node-test-'));
const handlerPath = path.join(dir, 'handler.js');
fs.writeFileSync(handlerPath, `
module.exports = async (event, context) => {
  console.log('a log line');
  if (event === 'boom') throw new TypeError('boom');
  return { event, id: context.executionId, trace: context.trace_id, timeout: context.timeoutMs,
           remainingOk: context.remainingMs() > 0 };
};`);
process.env.HANDLER_PATH = handlerPath;
const runtime = require('./runtime.js');

async function once(raw, env) {
  const out = [];
  const code = await runtime.runOnce(Buffer.from(raw), env, (t) => out.push(t));
  return { code, result: out.length ? JSON.parse(out[0]) : undefined };
}

function request(port, method, route, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: route, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(Buffer.concat(chunks).toString()) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const tests = {
  async stdioResultAndContextFromEnv() {
    const { code, result } = await once('{"a":1}', { EXECUTION_ID: 'e1', TRACE_ID: 't1', TIMEOUT_MS: '1500' });
    assert.strictEqual(code, 0);
    assert.deepStrictEqual(result, { event: { a: 1 }, id: 'e1', trace: 't1', timeout: 1500, remainingOk: true });
  },
  async emptyPayloadIsNullAndDefaults() {
    const { result } = await once('', {});
    assert.strictEqual(result.event, null);
    assert.strictEqual(result.timeout, 30000);
  },
  async handlerErrorExits1() {
    assert.deepStrictEqual(await once('"boom"', {}), { code: 1, result: undefined });
    assert.strictEqual((await once('{bad', {})).code, 1);
  },
  async modeSelection() {
    assert.strictEqual(runtime.chooseMode([], {}), 'STDIO');
    assert.strictEqual(runtime.chooseMode([], { EXECUTION_MODE: 'http' }), 'HTTP');
    assert.strictEqual(runtime.chooseMode([], { EXECUTION_MODE: 'WARM' }), 'HTTP');
    assert.strictEqual(runtime.chooseMode([], { EXECUTION_MODE: 'WARM', WARM_RUNTIME: 'STDIO' }), 'STDIO');
    assert.strictEqual(runtime.chooseMode(['--stdio'], { EXECUTION_MODE: 'HTTP' }), 'STDIO');
  },
  async encodeUndefinedIsNull() {
    assert.strictEqual(runtime.encode(undefined), 'null');
  },
  async traceContextAndTimeLeft() {
    const parent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const fromEnv = runtime.contextFrom({ TRACEPARENT: parent, TRACESTATE: 'a=1', TIMEOUT_MS: '800' });
    assert.strictEqual(fromEnv.traceparent, parent);
    assert.deepStrictEqual(fromEnv.traceHeaders(), { traceparent: parent, tracestate: 'a=1' });
    assert.ok(fromEnv.remainingMs() > 0 && fromEnv.remainingMs() <= 800);
    assert.deepStrictEqual(runtime.contextFrom({}).traceHeaders(), {});
    // Over HTTP the request's headers win (Node lowercases header names).
    const fromRequest = runtime.contextFrom(
      { TRACEPARENT: 'stale', TIMEOUT_MS: '30000' },
      { traceparent: parent, 'x-timeout-ms': '250' },
    );
    assert.strictEqual(fromRequest.traceparent, parent);
    assert.strictEqual(fromRequest.tracestate, null);
    assert.strictEqual(fromRequest.timeoutMs, 250);
    assert.ok(fromRequest.remainingMs() <= 250);
  },
  async warmCallsMarkTheirLinesWithTheirExecution() {
    const written = [];
    const stream = { write: (chunk) => { written.push(String(chunk)); return true; } };
    runtime.markLines(stream);
    stream.write('before any call\n');
    const tick = () => new Promise((r) => setImmediate(r));
    await Promise.all([
      runtime.inCall('exec-a', async () => { stream.write('from a, part '); await tick(); stream.write('one\n'); }),
      runtime.inCall('exec-b', async () => { await tick(); stream.write('from b\nunfinished b'); }),
    ]);
    stream.write('after the calls\n');
    const lines = written.join('').split('\n');
    assert.strictEqual(lines[0], 'before any call');
    assert.ok(lines.includes('\x1eexec-a\x1ffrom a, part one'), lines);
    assert.ok(lines.includes('\x1eexec-b\x1ffrom b'), lines);
    assert.ok(lines.includes('\x1eexec-b\x1funfinished b'), lines);
    assert.deepStrictEqual(lines.slice(-2), ['after the calls', '']);
  },
  async httpServer() {
    const server = runtime.makeServer(runtime.loadHandler(), { TIMEOUT_MS: '900' });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address();
    try {
      assert.deepStrictEqual(await request(port, 'GET', '/health'), { status: 200, body: { status: 'ok' } });
      const ok = await request(port, 'POST', '/invoke', '{"x":2}', { 'X-Execution-Id': 'h1', 'X-Trace-Id': 'tr' });
      assert.deepStrictEqual(ok, { status: 200, body: { event: { x: 2 }, id: 'h1', trace: 'tr', timeout: 900, remainingOk: true } });
      const failed = await request(port, 'POST', '/invoke', '"boom"');
      assert.deepStrictEqual(failed, { status: 500, body: { error: { type: 'TypeError', message: 'boom' } } });
      assert.strictEqual((await request(port, 'POST', '/invoke', '{bad')).status, 400);
      assert.strictEqual((await request(port, 'GET', '/nope')).status, 404);
    } finally {
      server.close();
    }
  },
};

(async () => {
  let failed = 0;
  // Handler logs (console.log is redirected to stderr by runOnce) stay quiet here.
  const write = process.stderr.write.bind(process.stderr);
  for (const [name, fn] of Object.entries(tests)) {
    process.stderr.write = () => true;
    try {
      await fn();
      process.stderr.write = write;
      process.stdout.write(`ok   ${name}\n`);
    } catch (err) {
      process.stderr.write = write;
      failed += 1;
      process.stdout.write(`FAIL ${name}: ${err.stack}\n`);
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
  process.stdout.write(`${Object.keys(tests).length - failed} passed, ${failed} failed\n`);
  process.exit(failed ? 1 : 0);
})();
