'use strict';
// Handlers for the documented payload examples (test_runtime_lambda_examples.py).

exports.echo_event = async (event) => ({
  statusCode: 200,
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify(event),
  isBase64Encoded: false,
});

exports.respond = async (event) => JSON.parse(event.body);
