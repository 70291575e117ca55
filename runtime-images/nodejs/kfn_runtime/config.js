'use strict';
/**
 * The runtime's configuration, read once from the container environment (see CONTRACT.md).
 * Every variable has a default so that the runtime can be started by hand for local testing.
 */
const os = require('os');

/** Largest synchronous request and response body, as Lambda's 6 MB limit (6 MiB). */
const MAX_PAYLOAD_BYTES = 6 * 1024 * 1024;
/** After a 413, at most this much of the refused body is read and dropped before closing. */
const MAX_DISCARD_BYTES = 64 * 1024 * 1024;
/** Largest request head; bigger heads get 431 from Node's parser. */
const MAX_HEAD_BYTES = 64 * 1024;
/** Idle keep-alive connections are closed after this long; callers' pools should idle out sooner. */
const IDLE_TIMEOUT_MS = 65000;
/** On SIGTERM the runtime waits at most this long past the function timeout for answers to go out. */
const DRAIN_GRACE_MS = 2000;

function pick(env, names, fallback) {
  for (const name of names) {
    const raw = (env[name] || '').trim();
    if (raw) return raw;
  }
  return fallback;
}

function pickInt(env, names, fallback, minimum) {
  for (const name of names) {
    const raw = (env[name] || '').trim();
    if (!raw) continue;
    if (!/^-?\d+$/.test(raw)) throw new Error(`kfn runtime: ${name}=${JSON.stringify(raw)} is not an integer`);
    return Math.max(minimum, parseInt(raw, 10));
  }
  return fallback;
}

function fromEnv(env, hostname, now) {
  const version = pick(env, ['AWS_LAMBDA_FUNCTION_VERSION'], '$LATEST');
  const day = new Date(now).toISOString().slice(0, 10).replace(/-/g, '/');
  const cfg = {
    host: (env.KFN_HOST || '').trim() || undefined,
    port: pickInt(env, ['KFN_PORT'], 8080, 0),
    handler: pick(env, ['KFN_HANDLER', '_HANDLER'], 'index.handler'),
    taskRoot: pick(env, ['LAMBDA_TASK_ROOT'], '/var/task'),
    functionName: pick(env, ['KFN_FUNCTION_NAME', 'AWS_LAMBDA_FUNCTION_NAME'], 'function'),
    functionVersion: version,
    memoryMb: pickInt(env, ['KFN_MEMORY_MB', 'AWS_LAMBDA_FUNCTION_MEMORY_SIZE'], 128, 1),
    timeoutMs: pickInt(env, ['KFN_TIMEOUT_MS'], 3000, 1),
    initTimeoutMs: pickInt(env, ['KFN_INIT_TIMEOUT_MS'], 10000, 1),
    concurrency: pickInt(env, ['KFN_CONCURRENCY'], 1, 1),
    region: pick(env, ['AWS_REGION', 'AWS_DEFAULT_REGION'], 'local'),
    accountId: pick(env, ['KFN_ACCOUNT_ID'], '000000000000'),
    logStreamName: `${day}/[${version}]${hostname}`,
    stuckGraceMs: pickInt(env, ['KFN_STUCK_GRACE_MS'], 30000, 0),
  };
  cfg.logGroupName = `/aws/lambda/${cfg.functionName}`;
  cfg.functionArn = `arn:aws:lambda:${cfg.region}:${cfg.accountId}:function:${cfg.functionName}`;
  // The alb event's target group: one per function, its id a placeholder.
  cfg.targetGroupArn = `arn:aws:elasticloadbalancing:${cfg.region}:${cfg.accountId}:targetgroup/${cfg.functionName}/0000000000000000`;
  return cfg;
}

function load() {
  return fromEnv(process.env, os.hostname(), Date.now());
}

/** Fills in the variables Lambda sets for a function, before the handler module is loaded. */
function exportLambdaEnvironment(cfg, env) {
  const defaults = {
    AWS_LAMBDA_FUNCTION_NAME: cfg.functionName,
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(cfg.memoryMb),
    AWS_LAMBDA_FUNCTION_VERSION: cfg.functionVersion,
    AWS_LAMBDA_LOG_GROUP_NAME: cfg.logGroupName,
    AWS_LAMBDA_LOG_STREAM_NAME: cfg.logStreamName,
    AWS_REGION: cfg.region,
    AWS_DEFAULT_REGION: cfg.region,
    // The runtime the interpreter is: nodejs22.x on Node 22, as Lambda names it.
    AWS_EXECUTION_ENV: `AWS_Lambda_nodejs${process.versions.node.split('.')[0]}.x`,
    LAMBDA_TASK_ROOT: cfg.taskRoot,
    LAMBDA_RUNTIME_DIR: '/opt/kfn/runtime',
    _HANDLER: cfg.handler,
  };
  for (const [key, value] of Object.entries(defaults)) {
    if (env[key] === undefined || env[key] === '') env[key] = value;
  }
}

module.exports = {
  MAX_PAYLOAD_BYTES, MAX_DISCARD_BYTES, MAX_HEAD_BYTES, IDLE_TIMEOUT_MS, DRAIN_GRACE_MS, fromEnv, load, exportLambdaEnvironment,
};
