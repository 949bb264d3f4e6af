// __NAME__: a Gantry function in Node.js.
//
// The entry point is the exported function `(event, context)`: `event` is the input
// (JSON, checked against `input_schema` in function.yaml before the call), the value it
// returns (or resolves to) is the output. console.log goes to the execution's logs.
// `context` has executionId, traceId and timeoutMs.
module.exports = async (event, context) => {
  const name = (event && event.name) || 'world';
  console.log(`greeting ${name}`); // a log line, not the output
  return { greeting: `hello, ${name}` };
};
