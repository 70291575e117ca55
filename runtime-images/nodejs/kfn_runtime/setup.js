'use strict';
/**
 * Reads the configuration from the environment and readies the process for the handler: Lambda's
 * variables filled in, the task root as working directory, the log format, the awslambda global.
 * A normal start does this first; a pool runtime (pool.js) once it is specialised, after the
 * function's environment replaced the pod's. The server then loads the handler the same way.
 */
const config = require('./config');
const logs = require('./logs');
const streaming = require('./streaming');

/** The configuration, `overrides` over what the environment says (a pool's handler). */
function prepare(overrides = {}) {
  const cfg = { ...config.load(), ...overrides };
  config.exportLambdaEnvironment(cfg, process.env);
  try {
    process.chdir(cfg.taskRoot);
  } catch (e) {
    // the task root may not exist when run by hand; the handler load reports it
  }
  logs.install(logs.settingsFrom(process.env));
  streaming.install();
  return cfg;
}

module.exports = { prepare };
