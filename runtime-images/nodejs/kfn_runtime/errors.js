'use strict';
/**
 * Lambda's error shape, {errorType, errorMessage, stackTrace}. Callers parse this shape, so every
 * error on the invoke path uses it, whether it came from the handler or from the runtime.
 */

const IMPORT_MODULE_ERROR = 'Runtime.ImportModuleError';
const HANDLER_NOT_FOUND = 'Runtime.HandlerNotFound';
const MALFORMED_HANDLER_NAME = 'Runtime.MalformedHandlerName';
const USER_CODE_SYNTAX_ERROR = 'Runtime.UserCodeSyntaxError';
const MARSHAL_ERROR = 'Runtime.MarshalError';
const TIMEOUT = 'TimeoutError';
const TOO_MANY_REQUESTS = 'TooManyRequestsException';
const REQUEST_TOO_LARGE = 'RequestEntityTooLargeException';
const RESPONSE_TOO_LARGE = 'ResponseSizeTooLarge';
const INVALID_REQUEST_CONTENT = 'InvalidRequestContentException';
const SERVICE_UNAVAILABLE = 'ServiceUnavailableException';
const INVALID_RESPONSE = 'Runtime.InvalidResponse';
/** A pool runtime whose specialisation was refused: it serves nothing (410). kfn's name. */
const POOL_SPENT = 'Runtime.PoolPodSpent';
/** A specialise refused (bad layers, digest, body) or failed on the pod's own part (CONTRACT §13). */
const INVALID_LAYERS = 'Runtime.InvalidLayers';
/** A specialise after one began, or on a pod started with its function. */
const SPECIALISE_CONFLICT = 'Runtime.SpecialiseConflict';
/**
 * Loading the handler outlasted its budget (KFN_INIT_TIMEOUT_MS). kfn's name: Lambda logs
 * INIT_REPORT ... Status: timeout and runs the init again within the first invocation.
 */
const INIT_TIMEOUT = 'Runtime.InitTimeout';

/** The init error of a handler still loading when its init budget ran out. */
function initTimeout(budgetMs) {
  return shape(INIT_TIMEOUT, `Init timed out after ${(budgetMs / 1000).toFixed(2)} seconds: the handler's module was still ` +
    "loading. Make module-level code faster (load large things lazily) or raise the Function's initTimeout");
}

/**
 * The header on readiness answers that says the handler failed to load, with its errorType: the
 * activator routes to such a pod (it answers every invocation with the init error at once) only
 * when the function has no pod that loaded its handler.
 */
const INIT_ERROR_HEADER = 'Kfn-Init-Error';
/** The prefix of the one log line carrying the init error as JSON, which the operator reads. */
const INIT_ERROR_LOG_PREFIX = 'kfn runtime: init error ';

/** The log line reporting an init error: the prefix, then one line of JSON without the stack. */
function initErrorLine(error) {
  const brief = { errorType: error.errorType, errorMessage: String(error.errorMessage).slice(0, 2000) };
  return `${INIT_ERROR_LOG_PREFIX}${JSON.stringify(brief)}\n`;
}

function shape(errorType, errorMessage, stackTrace) {
  return { errorType, errorMessage, stackTrace: stackTrace || [] };
}

/** The shape of whatever a handler threw or passed to its callback, as Lambda's Node runtime. */
function fromThrown(err) {
  if (err instanceof Error) {
    const type = err.name || (err.constructor && err.constructor.name) || 'Error';
    let stack = typeof err.stack === 'string' ? err.stack.split('\n') : [];
    // The frames below the user's code are the runtime's own; they say nothing about the error.
    const cut = stack.findIndex((line) => line.includes(__dirname));
    if (cut > 0) stack = stack.slice(0, cut);
    return shape(type, err.message, stack);
  }
  if (typeof err === 'string') return shape('string', err);
  let message;
  try {
    message = JSON.stringify(err);
  } catch (e) {
    message = String(err);
  }
  return shape(typeof err, message === undefined ? String(err) : message);
}

function timeoutMessage(budgetMs) {
  return `Task timed out after ${(Math.max(0, budgetMs) / 1000).toFixed(2)} seconds`;
}

module.exports = {
  IMPORT_MODULE_ERROR, HANDLER_NOT_FOUND, MALFORMED_HANDLER_NAME, USER_CODE_SYNTAX_ERROR, MARSHAL_ERROR,
  TIMEOUT, INIT_TIMEOUT, initTimeout, TOO_MANY_REQUESTS, REQUEST_TOO_LARGE, RESPONSE_TOO_LARGE, INVALID_REQUEST_CONTENT,
  SERVICE_UNAVAILABLE, INVALID_RESPONSE, POOL_SPENT, INVALID_LAYERS, SPECIALISE_CONFLICT, INIT_ERROR_HEADER, INIT_ERROR_LOG_PREFIX, shape, fromThrown,
  timeoutMessage, initErrorLine,
};
