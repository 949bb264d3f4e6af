// A Node.js function with a dependency: `ms`, installed by `gantry fn build` with
// `npm ci` from package-lock.json (here from the tarball in vendor/, no registry needed).
const ms = require('ms');

module.exports = async (event) => {
  const duration = (event && event.duration) || '90s';
  console.log(`parsing ${duration}`); // a log line (stderr), not the result
  const millis = ms(duration);
  if (millis === undefined) throw new Error(`not a duration: ${duration}`);
  return { millis, long: ms(millis, { long: true }), library: 'ms', library_file: require.resolve('ms') };
};
