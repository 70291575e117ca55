'use strict';
// Test handlers for the Node.js runtime; handlers/python/app.py has the same ones in Python.

class BoomError extends Error {
  constructor(message) {
    super(message);
    this.name = 'BoomError';
  }
}

exports.echo = async (event, context) => {
  console.log('echo says hi');
  console.info('echo logs via logging');
  return {
    event,
    context: {
      function_name: context.functionName,
      function_version: context.functionVersion,
      invoked_function_arn: context.invokedFunctionArn,
      memory_limit_in_mb: context.memoryLimitInMB,
      aws_request_id: context.awsRequestId,
      log_group_name: context.logGroupName,
      log_stream_name: context.logStreamName,
      remaining_ms: context.getRemainingTimeInMillis(),
      callback_waits: context.callbackWaitsForEmptyEventLoop,
    },
  };
};

exports.fail = async () => {
  throw new BoomError('the handler failed on purpose');
};

exports.slow = async (event) => {
  await new Promise((resolve) => setTimeout(resolve, event.ms || 0));
  return { slept: event.ms || 0 };
};
exports.slow_async = exports.slow;

exports.http = async (event) => ({
  statusCode: 201,
  headers: { 'X-Method': event.requestContext.http.method, 'X-Count': 3 },
  cookies: ['session=abc; Path=/', 'theme=dark'],
  body: JSON.stringify(event),
});

exports.binary = async (event) => {
  const data = event.isBase64Encoded ? Buffer.from(event.body, 'base64') : Buffer.alloc(0);
  return {
    statusCode: 200,
    headers: { 'Content-Type': 'application/octet-stream' },
    body: Buffer.from(data).reverse().toString('base64'),
    isBase64Encoded: true,
  };
};

exports.plain = async () => ['plain', 1];

exports.callback = (event, context, callback) => {
  setTimeout(() => callback(null, { via: 'callback', event }), 5);
};

exports.callback_error = (event, context, callback) => {
  callback(new BoomError('the callback failed on purpose'));
};

// An export that names no function: loading `app.NOT_A_FUNCTION` fails with HandlerNotFound.
exports.NOT_A_FUNCTION = 42;

// A handler's own 429, shaped like the runtime's refusal and trying to forge its mark.
exports.too_many = async () => ({
  statusCode: 429,
  headers: { 'Retry-After': '1', 'Kfn-Not-Started': 'busy', 'Kfn-Handler-Duration': '999' },
  body: JSON.stringify({ message: 'Too Many Requests' }),
});

// Kills its own process, as an out-of-memory kill would, when the event holds "poison".
exports.die_on_poison = async (event) => {
  if (JSON.stringify(event).includes('poison')) {
    process.kill(process.pid, 'SIGKILL');
  }
  return { handled: (event.records || []).length };
};

// A REST API (payload 1.0) or ALB handler: the event as body, cookies as multi-value.
exports.rest = async (event) => ({
  statusCode: 200,
  headers: { 'Content-Type': 'application/json', 'X-Format': 'single' },
  multiValueHeaders: { 'Set-Cookie': ['a=1', 'b=2'] },
  body: JSON.stringify(event),
});

// What a caller's client context (Lambda's X-Amz-Client-Context) gave the handler.
exports.client_context = async (event, context) => ({
  custom: context.clientContext ? context.clientContext.custom : null,
  env: context.clientContext ? context.clientContext.env : null,
});
