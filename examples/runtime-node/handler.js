// Example Node.js function for gantry/runtime-node: greets and echoes its context.
module.exports = async (event, context) => {
  const name = (event && event.name) || 'world';
  console.log(`greeting ${name}`); // a log line (stderr), not the result
  if (name === 'fail') throw new Error('asked to fail');
  await new Promise((resolve) => setTimeout(resolve, 1)); // async handlers are awaited
  return {
    greeting: `hello, ${name}`,
    runtime: 'node',
    execution_id: context.executionId,
    trace_id: context.traceId,
    timeout_ms: context.timeoutMs,
  };
};
