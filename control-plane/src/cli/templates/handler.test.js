// Tests of handler.js. Run them with `npm test` (node --test) in this folder.
const test = require('node:test');
const assert = require('node:assert');
const handle = require('./handler');

const context = { executionId: 'test-execution', traceId: null, timeoutMs: 10000 };

test('greets by name', async () => {
  assert.deepStrictEqual(await handle({ name: 'Ada' }, context), { greeting: 'hello, Ada' });
});

test('greets the world without a name', async () => {
  assert.deepStrictEqual(await handle({}, context), { greeting: 'hello, world' });
});
