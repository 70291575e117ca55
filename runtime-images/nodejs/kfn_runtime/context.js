'use strict';
/** The context argument handlers receive, with the fields of Lambda's Node context. */

function parseClientContext(header) {
  if (!header) return undefined;
  try {
    const fields = JSON.parse(Buffer.from(header, 'base64').toString('utf-8'));
    return fields && typeof fields === 'object' ? fields : undefined;
  } catch (e) {
    return undefined; // optional: a malformed one is ignored
  }
}

/**
 * A context whose getRemainingTimeInMillis counts down to deadlineMs. settle(err, result) is how
 * the legacy done/succeed/fail methods end the invocation.
 */
function makeContext({ cfg, requestId, deadlineMs, invocationType, clientContext, settle, clock = Date.now }) {
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: cfg.functionName,
    functionVersion: cfg.functionVersion,
    invokedFunctionArn: cfg.functionArn,
    memoryLimitInMB: String(cfg.memoryMb),
    awsRequestId: requestId,
    logGroupName: cfg.logGroupName,
    logStreamName: cfg.logStreamName,
    identity: undefined,
    clientContext,
    invocationType,
    getRemainingTimeInMillis: () => Math.max(0, deadlineMs - clock()),
    done: (err, result) => settle(err, result),
    succeed: (result) => settle(null, result),
    fail: (err) => settle(err === undefined || err === null ? new Error('handler failed') : err),
  };
}

module.exports = { parseClientContext, makeContext };
