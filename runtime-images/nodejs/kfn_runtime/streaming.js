'use strict';
/**
 * Response streaming as Lambda's Node.js runtime offers it (CONTRACT.md §12).
 *
 * `awslambda.streamifyResponse(async (event, responseStream, context) => {...})` marks a
 * handler as streaming (the same symbol Lambda's runtime reads, so libraries that test for it
 * keep working); the handler writes its body to `responseStream`, a Writable, and ends it.
 * `awslambda.HttpResponseStream.from(responseStream, {statusCode, headers, cookies})` sets an
 * HTTP answer's status and headers: as in Lambda, it writes the prelude in the stream itself
 * (JSON, then 8 NUL bytes, with the content type application/vnd.awslambda.http-integration-response),
 * and the runtime reads it back from there, so a hand-written prelude works as well.
 *
 * Every write goes out as one HTTP/1.1 chunk as soon as the socket takes it; while the socket's
 * buffer is full the stream's write callback waits, so `pipeline()` and any writer that honours
 * `write()`'s return value are slowed by a slow reader and memory stays bounded. An error or
 * the deadline after the head went out ends the stream with trailers carrying the error
 * (`Kfn-Function-Error`, `Kfn-Error-Type`, `Kfn-Error-Body`: the error shape as base64 JSON),
 * as Lambda's runtime API reports a streamed response's failure. A chunked stream's last chunk
 * also carries Kfn-Handler-Duration, the handler's time up to the stream's end.
 */
const { Writable } = require('stream');
const { finished } = require('stream/promises');
const events = require('./events');

const STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HIGH_WATER_MARK = Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark');
const STREAM_RESPONSE = 'response';
const PRELUDE_CONTENT_TYPE = 'application/vnd.awslambda.http-integration-response';
const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
const DELIMITER = Buffer.alloc(8);
/** A prelude longer than this without its delimiter is malformed (headers are bounded too). */
const MAX_PRELUDE_BYTES = 64 * 1024;
const ERROR_TRAILERS = ['Kfn-Function-Error', 'Kfn-Error-Type', 'Kfn-Error-Body'];
const DURATION_TRAILER = 'Kfn-Handler-Duration';
/** What the head's Trailer announces. */
const TRAILERS = [...ERROR_TRAILERS, DURATION_TRAILER];

class InvalidStreamingOperation extends Error {
  constructor(message) {
    super(message);
    this.name = 'Runtime.InvalidStreamingOperation';
  }
}

/** Marks a handler as streaming; options.highWaterMark sizes its stream's buffer. */
function streamifyResponse(handler, options) {
  if (typeof handler !== 'function') throw new TypeError('streamifyResponse takes the handler function');
  handler[STREAMING] = STREAM_RESPONSE;
  const highWaterMark = options ? Number(options.highWaterMark) : 0;
  if (highWaterMark > 0) handler[HIGH_WATER_MARK] = highWaterMark;
  return handler;
}

function isStreaming(handler) {
  return typeof handler === 'function' && handler[STREAMING] === STREAM_RESPONSE;
}

class HttpResponseStream {
  /** Puts the prelude (status, headers, cookies) in front of what the handler writes. */
  static from(underlyingStream, prelude) {
    underlyingStream.setContentType(PRELUDE_CONTENT_TYPE);
    const metadata = JSON.stringify(prelude); // a NUL byte cannot occur in JSON text
    underlyingStream._onBeforeFirstWrite = (write) => {
      write(metadata);
      write(new Uint8Array(DELIMITER.length));
    };
    return underlyingStream;
  }
}

/** The global `awslambda` object of Lambda's Node runtime, unless the function opts out as there. */
function install(target = globalThis, env = process.env) {
  const optOut = env.AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA;
  if (optOut === '1' || optOut === 'true') return;
  target.awslambda = { ...(target.awslambda || {}), streamifyResponse, HttpResponseStream };
}

/**
 * The responseStream a streaming handler writes to: the answer's head goes out when it is known
 * (the first body byte, or the prelude's end), then every piece as a chunk.
 * sendHead(status, headers) sets the head on the server's response.
 */
class ResponseStream extends Writable {
  constructor(res, { httpEvent, extraHeaders, sendHead, highWaterMark, elapsedS }) {
    super(highWaterMark ? { highWaterMark } : {});
    // The handler's time so far (seconds), for the Kfn-Handler-Duration trailer; durationS is
    // the figure the trailer carried.
    this._elapsedS = elapsedS;
    this.durationS = null;
    this._res = res;
    this._httpEvent = httpEvent;
    this._extraHeaders = extraHeaders;
    this._sendHeadTo = sendHead;
    this._contentType = DEFAULT_CONTENT_TYPE;
    this._written = false;
    this._prelude = null;
    this._onBeforeFirstWrite = undefined;
    this.headSent = false;
    /** The first error the stream met (a malformed prelude, a client gone). */
    this.failure = null;
    // Errors reach the handler through its write callbacks and pipeline(); this keeps an
    // ignored one from becoming an uncaught exception.
    this.on('error', (err) => {
      if (!this.failure) this.failure = err;
    });
  }

  setContentType(contentType) {
    if (this._written) throw new InvalidStreamingOperation('Cannot set content-type, too late.');
    this._contentType = String(contentType);
  }

  write(chunk, encoding, callback) {
    if (typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) chunk = JSON.stringify(chunk);
    this._beforeFirstWrite();
    return super.write(chunk, encoding, callback);
  }

  end(chunk, encoding, callback) {
    let data = chunk;
    let done = callback;
    if (typeof data === 'function') {
      done = data;
      data = undefined;
    } else if (typeof encoding === 'function') {
      done = encoding;
    }
    if (data !== undefined && data !== null) {
      this.write(data, typeof encoding === 'string' ? encoding : undefined);
    } else {
      this._beforeFirstWrite(); // a prelude with no body still sets the head
    }
    return super.end(done);
  }

  _beforeFirstWrite() {
    if (this._written) return;
    this._written = true;
    if (typeof this._onBeforeFirstWrite === 'function') this._onBeforeFirstWrite((piece) => super.write(piece));
  }

  _write(chunk, _encoding, callback) {
    let data = chunk;
    if (!this.headSent) {
      if (this._contentType === PRELUDE_CONTENT_TYPE) {
        this._prelude = this._prelude ? Buffer.concat([this._prelude, chunk]) : chunk;
        const end = this._prelude.indexOf(DELIMITER);
        if (end < 0) {
          callback(this._prelude.length > MAX_PRELUDE_BYTES
            ? new events.InvalidResultError('the prelude has no end (8 NUL bytes) in its first 64 KiB')
            : null);
          return;
        }
        let prelude;
        try {
          prelude = JSON.parse(this._prelude.subarray(0, end).toString('utf-8'));
        } catch (err) {
          callback(new events.InvalidResultError(`the prelude is not JSON: ${err.message}`));
          return;
        }
        data = this._prelude.subarray(end + DELIMITER.length);
        this._prelude = null;
        if (!this._head(prelude, callback)) return;
      } else if (!this._head(null, callback)) {
        return;
      }
      if (!data.length) this._res.flushHeaders(); // the head is known: it goes out now
    }
    this._forward(data, callback);
  }

  _final(callback) {
    if (!this.headSent) {
      if (this._prelude) {
        callback(new events.InvalidResultError('the prelude has no end (8 NUL bytes)'));
        return;
      }
      if (!this._head(this._contentType === PRELUDE_CONTENT_TYPE ? {} : null, callback)) return;
    }
    // Sent with the last chunk; Node drops trailers of an answer that is not chunked.
    this._res.addTrailers(this._durationTrailer());
    this._res.end();
    callback();
  }

  /** The Kfn-Handler-Duration trailer, noting the figure (durationS) for the REPORT line. */
  _durationTrailer() {
    if (typeof this._elapsedS !== 'function') return {};
    this.durationS = this._elapsedS();
    return { [DURATION_TRAILER]: this.durationS.toFixed(6) };
  }

  /** Sets the head; false (and the callback given the error) for a malformed prelude. */
  _head(prelude, callback) {
    let status = 200;
    let headers = [['Content-Type', this._contentType]];
    if (prelude !== null) {
      let head;
      try {
        head = events.streamHead(prelude, DEFAULT_CONTENT_TYPE);
      } catch (err) {
        callback(err);
        return false;
      }
      if (this._httpEvent) {
        ({ status, headers } = head);
      } else {
        // The invoke path's answer is the body alone: 200, with the prelude's content type.
        const typed = head.headers.find(([name]) => name.toLowerCase() === 'content-type');
        headers = [['Content-Type', typed ? typed[1] : DEFAULT_CONTENT_TYPE]];
      }
    }
    this._sendHeadTo(status, [...headers, ...this._extraHeaders, ['Trailer', TRAILERS.join(', ')]]);
    this.headSent = true;
    return true;
  }

  /** Hands data to the socket; the callback waits while its buffer is full (backpressure). */
  _forward(data, callback) {
    const res = this._res;
    if (res.destroyed) {
      callback(new Error('the client closed the connection'));
      return;
    }
    if (!data.length || res.write(data)) {
      callback();
      return;
    }
    const cleanup = () => {
      res.off('drain', onDrain);
      res.off('close', onClose);
    };
    const onDrain = () => {
      cleanup();
      callback();
    };
    const onClose = () => {
      cleanup();
      callback(new Error('the client closed the connection'));
    };
    res.on('drain', onDrain);
    res.on('close', onClose);
  }

  /**
   * The handler failed or ran out of time after the head went out: end the answer with the
   * error in trailers and stop the stream (later writes fail). False if the head was not sent:
   * then the server answers with the error as for any handler.
   */
  fail(shape) {
    const res = this._res;
    this.destroy();
    if (!this.headSent || res.writableEnded) return false;
    if (!res.chunkedEncoding) {
      // HEAD (no body to cut) or an HTTP/1.0 client (reading to the end): no trailers.
      if (res.req && res.req.method === 'HEAD') res.end();
      else res.destroy();
      return true;
    }
    res.addTrailers({
      'Kfn-Function-Error': 'Unhandled',
      'Kfn-Error-Type': shape.errorType,
      'Kfn-Error-Body': Buffer.from(JSON.stringify(shape), 'utf-8').toString('base64'),
      ...this._durationTrailer(),
    });
    res.end();
    return true;
  }
}

/**
 * Runs a streaming handler: resolves once it resolved and its stream finished; rejects with
 * what it threw, and as Lambda's runtime does when it returns no promise or resolves before
 * ending its stream.
 */
async function run(handler, event, ctx, stream) {
  const returned = handler(event, stream, ctx);
  if (!returned || typeof returned.then !== 'function') {
    throw new InvalidStreamingOperation('Streaming does not support non-async handlers.');
  }
  const result = await returned;
  if (result !== undefined) console.warn('Streaming handlers ignore return values.');
  if (stream.failure) throw stream.failure;
  if (!stream.writableEnded) throw new InvalidStreamingOperation('Response stream is not finished.');
  await finished(stream);
  if (stream.failure) throw stream.failure;
}

module.exports = {
  HIGH_WATER_MARK,
  HttpResponseStream,
  ResponseStream,
  install,
  isStreaming,
  run,
  streamifyResponse,
};
