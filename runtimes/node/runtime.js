#!/usr/bin/env node
// Gantry Node.js runtime: runs a user's handler under the watchdog. No dependencies.
//
// The user's file (HANDLER_PATH, default /app/handler.js) exports the handler:
//
//   module.exports = async (event, context) => ({ any: 'JSON value' });
//   // or exports.handler = ..., or exports.handle = ...
//
// and this module serves it in the mode the watchdog runs (EXECUTION_MODE):
//
//   STDIO (default)  one invocation: the payload (JSON) on stdin, the result as the last
//                    line on stdout. console.log in the handler goes to stderr (logs).
//   FILE             one invocation: INPUT_FILE -> OUTPUT_FILE.
//   HTTP, WARM       an HTTP server on 127.0.0.1:$PORT (HOST overrides the address):
//                    GET /health -> 200 once the handler is loaded;
//                    POST /invoke with the payload as the body -> 200 and the result as
//                    JSON, or 500 {"error": {"type", "message"}} when the handler throws.
//                    In WARM mode with WARM_RUNTIME=STDIO/FILE the one-shot forms are used.
//
// In WARM mode one runtime serves many calls at once, so every line a handler writes on
// stdout or stderr during a call is marked with its execution (RS, the execution id, US,
// then the line), which the watchdog and Gantry use to file the line under that execution.
//
// `--stdio`, `--file` or `--http` force a mode. A handler that throws (or fails to load)
// exits with code 1 in the one-shot modes: the watchdog reports FUNCTION_ERROR with the
// last stderr line as the message.
//
// `context`: executionId / execution_id, traceId / trace_id (X-Execution-Id / X-Trace-Id
// headers in HTTP mode, EXECUTION_ID / TRACE_ID otherwise), timeoutMs / timeout_ms
// (X-Timeout-Ms, the time left when the request was sent, or TIMEOUT_MS, default 30000),
// deadline (epoch ms), remainingMs(), traceparent and tracestate (the W3C trace context
// the invocation runs under: headers in HTTP mode, TRACEPARENT / TRACESTATE otherwise),
// traceHeaders() (those two as headers, to pass the trace on to services the handler
// calls), functionName (FUNCTION_NAME).
'use strict';

const { AsyncLocalStorage } = require('async_hooks');
const fs = require('fs');
const http = require('http');
const path = require('path');

const DEFAULT_HANDLER_PATH = '/app/handler.js';
const DEFAULT_TIMEOUT_MS = 30000;

function intOrNull(text) {
  if (text === undefined || text === null || text === '') return null;
  const n = Number.parseInt(text, 10);
  return Number.isFinite(n) ? n : null;
}

function contextFrom(env, headers = {}) {
  const pick = (header, variable) => headers[header] || env[variable] || null;
  const timeoutMs = intOrNull(pick('x-timeout-ms', 'TIMEOUT_MS')) ?? DEFAULT_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  const executionId = pick('x-execution-id', 'EXECUTION_ID');
  const traceId = pick('x-trace-id', 'TRACE_ID');
  const traceparent = pick('traceparent', 'TRACEPARENT');
  const tracestate = pick('tracestate', 'TRACESTATE');
  return {
    executionId,
    traceId,
    traceparent,
    tracestate,
    timeoutMs,
    deadline,
    functionName: env.FUNCTION_NAME || null,
    // snake_case aliases, the same names as the Python runtime
    execution_id: executionId,
    trace_id: traceId,
    timeout_ms: timeoutMs,
    remainingMs() {
      return Math.max(0, deadline - Date.now());
    },
    traceHeaders() {
      const headers = {};
      if (traceparent) headers.traceparent = traceparent;
      if (tracestate) headers.tracestate = tracestate;
      return headers;
    },
  };
}

function loadHandler(file) {
  const handlerPath = path.resolve(file || process.env.HANDLER_PATH || DEFAULT_HANDLER_PATH);
  if (!fs.existsSync(handlerPath)) {
    throw new Error(`no handler file at ${handlerPath} (COPY your handler.js to /app/handler.js)`);
  }
  const mod = require(handlerPath);
  const name = process.env.HANDLER_FUNCTION;
  const handler = name ? mod[name] : typeof mod === 'function' ? mod : mod.handler || mod.handle || mod.default;
  if (typeof handler !== 'function') {
    throw new Error(`${handlerPath} must export a function: module.exports = async (event, context) => ...`);
  }
  return handler;
}

function encode(result) {
  const text = JSON.stringify(result === undefined ? null : result);
  return text === undefined ? 'null' : text;
}

function parsePayload(raw) {
  const text = Buffer.isBuffer(raw) ? raw.toString('utf8') : String(raw);
  return text.trim() === '' ? null : JSON.parse(text);
}

function describe(err) {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return `Error: ${typeof err === 'string' ? err : JSON.stringify(err)}`;
}

// --- one-shot modes -----------------------------------------------------------------

async function runOnce(raw, env, write) {
  // The handler's console.log output is logs: keep it off the result channel.
  console.log = console.error;
  console.info = console.error;
  console.debug = console.error;
  let text;
  try {
    const handler = loadHandler();
    const event = parsePayload(raw);
    text = encode(await handler(event, contextFrom(env)));
  } catch (err) {
    if (err && err.stack) process.stderr.write(`${err.stack}\n`);
    process.stderr.write(`${describe(err)}\n`);
    return 1;
  }
  await write(text);
  return 0;
}

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on('data', (c) => chunks.push(c));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks)));
    process.stdin.on('error', reject);
  });
}

async function runStdio(env = process.env) {
  const raw = await readStdin();
  return runOnce(raw, env, (text) => new Promise((resolve) => process.stdout.write(`${text}\n`, resolve)));
}

async function runFile(env = process.env) {
  const raw = fs.readFileSync(env.INPUT_FILE || '/tmp/input.json');
  return runOnce(raw, env, (text) => fs.writeFileSync(env.OUTPUT_FILE || '/tmp/output.json', text));
}

// --- HTTP mode ----------------------------------------------------------------------

const MARK_START = '\x1e';
const MARK_END = '\x1f';
// The call whose handler is running, across its awaits.
const currentCall = new AsyncLocalStorage();
// Each marked stream's own write, for the unfinished last line of a call.
const markedStreams = new Map();

// Makes `stream` mark each line a call writes with the call's execution.
function markLines(stream) {
  const write = stream.write.bind(stream);
  markedStreams.set(stream, write);
  stream.write = (chunk, ...rest) => {
    const call = currentCall.getStore();
    if (!call) return write(chunk, ...rest);
    const text = (call.pending.get(stream) || '') + (typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
    const lines = text.split('\n');
    call.pending.set(stream, lines.pop());
    const marked = lines.map((line) => `${MARK_START}${call.id}${MARK_END}${line}\n`).join('');
    if (marked) return write(marked, ...rest);
    const done = rest[rest.length - 1];
    if (typeof done === 'function') done();
    return true;
  };
}

// Runs `work` as the call of `executionId`: with marking on, its lines carry the id.
async function inCall(executionId, work) {
  if (!executionId || markedStreams.size === 0) return work();
  const call = { id: executionId, pending: new Map() };
  try {
    return await currentCall.run(call, work);
  } finally {
    for (const [stream, rest] of call.pending) {
      if (rest) markedStreams.get(stream)(`${MARK_START}${call.id}${MARK_END}${rest}\n`);
    }
  }
}

function makeServer(handler, env = process.env) {
  const send = (res, status, body) => {
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  };
  return http.createServer((req, res) => {
    const route = (req.url || '/').split('?')[0];
    if (req.method === 'GET' && (route === '/health' || route === '/healthz')) {
      send(res, 200, '{"status":"ok"}');
      return;
    }
    if (req.method !== 'POST' || (route !== '/invoke' && route !== '/')) {
      send(res, 404, '{"error":{"type":"NotFound","message":"GET /health or POST /invoke"}}');
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      let event;
      try {
        event = parsePayload(Buffer.concat(chunks));
      } catch (err) {
        send(res, 400, encode({ error: { type: 'InvalidInput', message: `the body is not JSON: ${err.message}` } }));
        return;
      }
      const context = contextFrom(env, req.headers);
      try {
        const result = await inCall(context.executionId, () => handler(event, context));
        send(res, 200, encode(result));
      } catch (err) {
        if (err && err.stack) process.stderr.write(`${err.stack}\n`);
        const type = err instanceof Error ? err.name : 'Error';
        const message = err instanceof Error ? err.message : String(err);
        send(res, 500, encode({ error: { type, message } }));
      }
    });
  });
}

function runHttp(env = process.env) {
  let handler;
  try {
    handler = loadHandler();
  } catch (err) {
    if (err && err.stack) process.stderr.write(`${err.stack}\n`);
    process.stderr.write(`${describe(err)}\n`);
    return Promise.resolve(1);
  }
  const host = env.HOST || '127.0.0.1';
  const port = intOrNull(env.PORT) ?? 8080;
  if ((env.EXECUTION_MODE || '').toUpperCase() === 'WARM') {
    markLines(process.stdout);
    markLines(process.stderr);
  }
  const server = makeServer(handler, env);
  return new Promise((resolve) => {
    const stop = () => server.close(() => resolve(0)); // drains in-flight requests
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    server.on('error', (err) => {
      process.stderr.write(`${describe(err)}\n`);
      resolve(1);
    });
    server.listen(port, host, () => {
      process.stderr.write(`gantry node runtime listening on ${host}:${server.address().port}\n`);
    });
  });
}

function chooseMode(argv, env) {
  for (const [flag, mode] of [['--stdio', 'STDIO'], ['--file', 'FILE'], ['--http', 'HTTP']]) {
    if (argv.includes(flag)) return mode;
  }
  let mode = (env.EXECUTION_MODE || 'STDIO').toUpperCase();
  if (mode === 'WARM') mode = (env.WARM_RUNTIME || 'HTTP').toUpperCase();
  return ['STDIO', 'FILE', 'HTTP'].includes(mode) ? mode : 'STDIO';
}

async function main(argv = process.argv.slice(2)) {
  const mode = chooseMode(argv, process.env);
  if (mode === 'HTTP') return runHttp();
  if (mode === 'FILE') return runFile();
  return runStdio();
}

module.exports = { contextFrom, loadHandler, encode, parsePayload, makeServer, chooseMode, runOnce, markLines, inCall };

if (require.main === module) {
  main().then(
    // Exit now: timers or sockets the handler left open must not keep a one-shot
    // invocation alive (stdout and stderr are synchronous for pipes and files on Linux).
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`${describe(err)}\n`);
      process.exit(1);
    },
  );
}
