'use strict';
/**
 * Streaming handlers for the streaming tests and benchmark; each has a twin in streams.py.
 * A gate is a FIFO the test names in the event: reading it waits until the test writes it.
 */
const fs = require('fs');
const { once } = require('events');
const { Readable } = require('stream');
const { pipeline } = require('stream/promises');

const gateOf = (event) => event.gate || (event.queryStringParameters || {}).gate;
const mibOf = (event) => Number(event.mib || (event.queryStringParameters || {}).mib || 1);
const prelude = { statusCode: 201, headers: { 'Content-Type': 'text/plain', 'X-Stream': 'yes' }, cookies: ['step=1'] };

exports.gated = awslambda.streamifyResponse(async (event, responseStream) => {
  const stream = awslambda.HttpResponseStream.from(responseStream, prelude);
  stream.write('first\n');
  const rest = await fs.promises.readFile(gateOf(event));
  stream.end(Buffer.concat([Buffer.from('after gate: '), rest]));
});

exports.bare = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write(Buffer.from([0, 1]));
  responseStream.write('binary');
  responseStream.end('\u00e9');
});

exports.piped = awslambda.streamifyResponse(async (event, responseStream) => {
  await pipeline(Readable.from([Buffer.from([0, 1]), 'binary', '\u00e9']), responseStream);
});

exports.fails_midway = awslambda.streamifyResponse(async (event, responseStream) => {
  await new Promise((resolve) => responseStream.write('partial', resolve));
  throw new Error('failed midway');
});

exports.fails_first = awslambda.streamifyResponse(async () => {
  throw new Error('failed midway');
});

exports.stuck_midway = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('partial');
  await fs.promises.readFile(gateOf(event));
  responseStream.end('too late');
});

exports.not_async = awslambda.streamifyResponse(() => 'a value, not a promise');

exports.flood = awslambda.streamifyResponse(async (event, responseStream) => {
  const piece = Buffer.alloc(65536, 'x');
  const count = mibOf(event) * 16;
  async function* pieces() {
    for (let i = 0; i < count; i += 1) yield piece;
  }
  await pipeline(Readable.from(pieces()), responseStream);
});

exports.first_byte = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.end(JSON.stringify({ ok: true }));
});

exports.endless = awslambda.streamifyResponse(async (event, responseStream) => {
  const piece = Buffer.alloc(65536, 'x');
  try {
    for (;;) {
      if (!responseStream.write(piece)) await once(responseStream, 'drain');
    }
  } catch (err) {
    console.log('stream stopped');
  }
});
