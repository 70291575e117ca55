'use strict';
/**
 * Entry point of the kfn Node.js runtime: `node /opt/kfn/runtime/kfn_runtime/index.js`.
 * Uses only Node's standard library (Node 18 or newer) so that it can be copied into an image as a
 * plain directory. See runtime-images/CONTRACT.md for the contract it speaks.
 */
const config = require('./config');
const logs = require('./logs');
const { Runtime } = require('./server');
const streaming = require('./streaming');

function main() {
  const cfg = config.load();
  config.exportLambdaEnvironment(cfg, process.env);
  try {
    process.chdir(cfg.taskRoot);
  } catch (e) {
    // the task root may not exist when run by hand; the handler load reports it
  }
  logs.install(logs.settingsFrom(process.env));
  streaming.install();
  const runtime = new Runtime(cfg);
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
