#!/usr/bin/env node
// STDIO function: the payload arrives on stdin, the result is written to stdout as JSON.
let data = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { data += chunk; });
process.stdin.on('end', () => {
  const event = JSON.parse(data || 'null');
  if (!event || typeof event.input !== 'string') {
    console.error('expected {"input": "<text>"}');
    process.exit(1); // FUNCTION_ERROR
  }
  console.error(`handling input of ${event.input.length} characters`);
  process.stdout.write(JSON.stringify({ output: event.input.toUpperCase(), runtime: 'node' }));
});
