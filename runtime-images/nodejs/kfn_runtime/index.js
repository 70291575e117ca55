'use strict';
/**
 * Entry point of the kfn Node.js runtime: `node /opt/kfn/runtime/kfn_runtime/index.js`.
 * Uses only Node's standard library (Node 18 or newer) so that it can be copied into an image as a
 * plain directory. See runtime-images/CONTRACT.md for the contract it speaks.
 *
 * A normal start reads its configuration and loads the handler at once. In pool mode
 * (KFN_POOL=1, pool.js) it only serves its probes until POST /_kfn/specialise brings a function;
 * the configuration is read then, from the function's environment.
 */
const config = require('./config');
const logs = require('./logs');
const pool = require('./pool');
const { Runtime } = require('./server');
const setup = require('./setup');

function main() {
  // The pod's environment as the container got it, before anything is filled in.
  const podEnv = { ...process.env };
  const pooled = pool.enabled(podEnv);
  const cfg = pooled ? config.load() : setup.prepare();
  const runtime = new Runtime(cfg, { pool: pooled ? { podEnv, settings: pool.settings(podEnv) } : null });
  process.on('SIGTERM', () => runtime.drain());
  process.on('SIGINT', () => runtime.drain());
  // An error escaping a handler's callbacks must not take down other invocations in flight.
  process.on('uncaughtException', (err) => {
    logs.write(logs.record('ERROR', logs.currentRequestId(), `Uncaught Exception \t${err && err.stack ? err.stack : err}`, Date.now()));
  });
  process.on('unhandledRejection', (reason) => {
    logs.write(logs.record('ERROR', logs.currentRequestId(), `Unhandled Promise Rejection \t${reason && reason.stack ? reason.stack : reason}`, Date.now()));
  });
  runtime.listen().catch((err) => {
    logs.write(`kfn runtime: cannot listen: ${err.message}\n`);
    process.exit(1);
  });
}

main();
