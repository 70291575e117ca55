'use strict';
/**
 * The runtime's HTTP server: routing, concurrency, time-outs and draining, on Node's http module.
 *
 * Time-outs: at the deadline the caller gets 504 and the handler's promise is abandoned; its
 * concurrency slot stays taken until it settles (JavaScript cannot stop it). A handler that blocks
 * the event loop cannot be interrupted at all; when it returns past its deadline the answer is a
 * 504 all the same. A pod whose every slot is stuck turns unready, then not live (see health.js).
 */
const http = require('http');
const crypto = require('crypto');
const config = require('./config');
const context = require('./context');
const errors = require('./errors');
const events = require('./events');
const health = require('./health');
const loader = require('./loader');
const logs = require('./logs');
const pool = require('./pool');
const setup = require('./setup');
const { ByteReader } = require('./bytes');
const streaming = require('./streaming');
const timing = require('./timing');

const READY_PATH = '/_kfn/ready';
const STARTED_PATH = '/_kfn/started';
const LIVE_PATH = '/_kfn/live';
const INVOKE_PATH = '/_kfn/invoke';
const SPECIALISE_PATH = '/_kfn/specialise';
const RESERVED_PREFIX = '/_kfn/';
const JSON_TYPE = ['Content-Type', 'application/json'];
const UNHANDLED = ['Kfn-Function-Error', 'Unhandled'];
// Marks a 429/503 for a request whose handler was never called (CONTRACT.md §3).
const BUSY = ['Kfn-Not-Started', 'busy'];
const DRAINING = ['Kfn-Not-Started', 'draining'];
// A pool runtime's refusals before it has a function (pool.js): idle or specialising, and spent.
const POOL_HEADER = 'Kfn-Pool';
const notStartedIn = (state) => ['Kfn-Not-Started', state];
// The handler's own time in seconds, on every answer of an invocation whose handler ran.
const HANDLER_DURATION = 'Kfn-Handler-Duration';

class BodyTooLargeError extends Error {}

/** What the init budget's timer resolves with, told apart from any handler. */
const TIMED_OUT = Symbol('init timed out');

function dump(value) {
  return Buffer.from(JSON.stringify(value), 'utf-8');
}

/**
 * The invocation's time budget in ms: Kfn-Timeout-Ms when the caller sent a positive one, never
 * more than the function's KFN_TIMEOUT_MS (a caller cannot stretch a function's time), else
 * KFN_TIMEOUT_MS. It counts from the handler's start (CONTRACT.md §3).
 */
function timeoutFrom(header, defaultMs) {
  const text = (header || '').trim();
  return /^\d+$/.test(text) && Number(text) > 0 ? Math.min(Number(text), defaultMs) : defaultMs;
}

function tooLargeResponse(size) {
  return errors.shape(errors.RESPONSE_TOO_LARGE,
    `Response payload size (${size} bytes) exceeded maximum allowed payload size (${config.MAX_PAYLOAD_BYTES} bytes).`);
}

/** [Kfn-Handler-Duration, seconds] for an outcome whose handler ran (durationS set), else none. */
function ran(outcome) {
  return typeof outcome.durationS === 'number' ? [[HANDLER_DURATION, outcome.durationS.toFixed(6)]] : [];
}

/**
 * [status, headers, body] answering POST /_kfn/invoke for an outcome {kind, result, error,
 * durationS}: durationS, the handler's time when it ran, becomes Kfn-Handler-Duration.
 */
function invokeResponse(outcome) {
  const [status, headers, body] = invokeAnswer(outcome);
  return [status, [...headers, ...ran(outcome)], body];
}

function invokeAnswer(outcome) {
  if (outcome.kind === 'ok') {
    let text;
    try {
      text = JSON.stringify(outcome.result === undefined ? null : outcome.result);
    } catch (err) {
      return [500, [JSON_TYPE, UNHANDLED], dump(errors.shape(errors.MARSHAL_ERROR, `Unable to stringify response body: ${err.message}`))];
    }
    const body = Buffer.from(text, 'utf-8');
    if (body.length > config.MAX_PAYLOAD_BYTES) return [502, [JSON_TYPE, UNHANDLED], dump(tooLargeResponse(body.length))];
    return [200, [JSON_TYPE], body];
  }
  const extra = {
    error: [500, [UNHANDLED]],
    timeout: [504, [UNHANDLED]],
    init_error: [502, [UNHANDLED]],
    busy: [429, [['Retry-After', '1'], BUSY]],
    draining: [503, [['Retry-After', '1'], DRAINING]],
    pool_waiting: [503, [['Retry-After', '1'], notStartedIn(outcome.state)]],
    pool_spent: [410, [notStartedIn('spent')]],
  }[outcome.kind];
  return [extra[0], [JSON_TYPE, ...extra[1]], dump(outcome.error)];
}

function gateway(status, message, { functionError = false, notStarted = null, retryAfter = true } = {}) {
  const headers = [JSON_TYPE];
  if (functionError) headers.push(UNHANDLED);
  if (notStarted && retryAfter) headers.push(['Retry-After', '1']);
  if (notStarted) headers.push(notStarted);
  return [status, headers, dump({ message })];
}

/**
 * [status, headers, body, problem] answering an HTTP event. Errors are answered as API Gateway
 * does, {"message": ...}, never with a stack trace; the detail goes to the function's log. A
 * failed function's message is its payload format's service's (events.FAILURE_MESSAGES).
 */
function httpResponse(outcome, payloadFormat = events.V2) {
  const [status, headers, body, problem] = httpAnswer(outcome, payloadFormat);
  return [status, [...headers, ...ran(outcome)], body, problem];
}

function httpAnswer(outcome, payloadFormat) {
  const failed = events.FAILURE_MESSAGES[payloadFormat];
  if (outcome.kind === 'ok') {
    let response;
    try {
      response = events.fromResult(outcome.result, payloadFormat);
    } catch (err) {
      return [...gateway(502, failed, { functionError: true }), `${errors.INVALID_RESPONSE}: ${err.message}`];
    }
    if (response.body.length > config.MAX_PAYLOAD_BYTES) {
      return [...gateway(502, failed, { functionError: true }), tooLargeResponse(response.body.length).errorMessage];
    }
    return [response.status, response.headers, response.body, null];
  }
  const answer = {
    error: gateway(502, failed, { functionError: true }),
    init_error: gateway(502, failed, { functionError: true }),
    timeout: gateway(504, 'Endpoint request timed out', { functionError: true }),
    busy: gateway(429, 'Too Many Requests', { notStarted: BUSY }),
    draining: gateway(503, 'Service Unavailable', { notStarted: DRAINING }),
    pool_waiting: gateway(503, 'Service Unavailable', { notStarted: notStartedIn(outcome.state) }),
    pool_spent: gateway(410, 'Gone', { notStarted: notStartedIn('spent'), retryAfter: false }),
  }[outcome.kind];
  return [...answer, null];
}

/**
 * Calls a handler in any of Lambda's forms: async (promise), callback (event, context, callback),
 * the legacy context.succeed/fail/done, or a plain function returning a value. Resolves with the
 * result, rejects with what the handler threw or passed as error. Only the first settlement counts.
 */
function callHandler(handler, event, makeCtx) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (err, result) => {
      if (settled) return;
      settled = true;
      if (err !== null && err !== undefined) reject(err);
      else resolve(result);
    };
    const ctx = makeCtx(settle);
    let returned;
    try {
      returned = handler(event, ctx, settle);
    } catch (err) {
      settle(err === null || err === undefined ? new Error(String(err)) : err);
      return;
    }
    if (returned && typeof returned.then === 'function') {
      returned.then((value) => settle(null, value), (err) => settle(err === null || err === undefined ? new Error('Promise rejected') : err));
    } else if (handler.length < 3 && returned !== undefined) {
      settle(null, returned);
    } else if (handler.length < 3) {
      // Neither a promise nor a callback parameter: Lambda answers null once the work is done;
      // a server's event loop is never empty, so wait one turn for context.succeed/done instead.
      setImmediate(() => settle(null, null));
    }
  });
}

class Runtime {
  /**
   * cfg: the configuration (config.js); a pool runtime's is the pod's until it is specialised.
   * pool: {podEnv, settings} in pool mode (pool.js), else null; its `state` is idle, then
   * specialising, then specialised (a function pod from then on) or spent (a refused request).
   */
  constructor(cfg, { clock = Date.now, pool: poolMode = null } = {}) {
    this.cfg = cfg;
    this.clock = clock;
    this.pool = poolMode === null ? null : { ...poolMode, state: 'idle' };
    this.handler = null;
    this.initError = null;
    this.initialized = false;
    this.initWaiters = [];
    this.initDurationMs = null;
    // Kfn-Init-Timing's value once loading ended.
    this.initTiming = null;
    this.slots = new Map();
    this.slotIds = 0;
    this.answering = 0;
    this.draining = false;
    this.exiting = false;
    this.server = null;
  }

  /** Starts listening, then loads the handler (not in pool mode); resolves with the bound port. */
  listen() {
    this.server = http.createServer({ maxHeaderSize: config.MAX_HEAD_BYTES }, (req, res) => this.onRequest(req, res));
    this.server.keepAliveTimeout = config.IDLE_TIMEOUT_MS;
    this.server.headersTimeout = config.IDLE_TIMEOUT_MS + 1000;
    this.server.requestTimeout = 0;
    this.server.on('checkContinue', (req, res) => {
      const length = Number(req.headers['content-length'] || 0);
      if (this.takesSpecialise(req)) {
        res.writeContinue(); // its body is bounded by the pool's own limits
        this.onRequest(req, res);
      } else if (length > config.MAX_PAYLOAD_BYTES) {
        this.onRequest(req, res); // answers 413 without asking for the body
      } else {
        res.writeContinue();
        this.onRequest(req, res);
      }
    });
    this.server.on('clientError', (err, socket) => {
      if (socket.writable) {
        const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
        socket.end(`HTTP/1.1 ${status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
      } else {
        socket.destroy();
      }
    });
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.cfg.port, this.cfg.host, () => {
        const port = this.server.address().port;
        const serving = this.pool ? 'idle in a pool: no handler until specialised' : this.describe();
        logs.write(`kfn runtime: nodejs listening on ${this.cfg.host || '*'}:${port}, ${serving}\n`);
        resolve(port);
      });
    }).then((port) => {
      if (!this.pool) this.initialize();
      return port;
    });
  }

  describe() {
    return `handler ${this.cfg.handler}, concurrency ${this.cfg.concurrency}, timeout ${this.cfg.timeoutMs} ms`;
  }

  /** Whether this is a POST /_kfn/specialise an idle pool runtime would read the body of. */
  takesSpecialise(req) {
    return req.method === 'POST' && req.url.split('?', 1)[0] === SPECIALISE_PATH && this.pool !== null && this.pool.state === 'idle';
  }

  /**
   * POST /_kfn/specialise (pool.js): lays out the layers, replaces the environment with the
   * function's, reads the configuration and loads the handler as a normal start does. Answers
   * 200 with Kfn-Init-Timing, or the ready probe's init error answer; a refused request (400, or
   * 500 for a failure of this pod's own) leaves the pod spent: 410 to every invocation after.
   * Accepted once: 409 after, 410 once spent.
   */
  async specialise(req, res) {
    if (this.pool.state !== 'idle') {
      const spent = this.pool.state === 'spent';
      const shape = spent
        ? errors.shape(errors.POOL_SPENT, 'This pool runtime failed to specialise and serves nothing.')
        : errors.shape(errors.SPECIALISE_CONFLICT, `This pool runtime was specialised already (${this.pool.state}).`);
      return this.refuseBody(req, res, [JSON_TYPE], dump(shape), spent ? 410 : 409);
    }
    this.pool.state = 'specialising';
    const started = this.clock();
    const reader = new ByteReader(req);
    try {
      const request = await pool.receive(reader, this.pool.settings, (line) => logs.write(line));
      pool.replaceEnvironment(process.env, pool.environment(this.pool.podEnv, request.env));
      try {
        this.cfg = setup.prepare({ handler: request.handler });
      } catch (err) {
        throw new pool.SpecialiseError(err.message);
      }
    } catch (err) {
      this.pool.state = 'spent';
      const refused = err instanceof pool.SpecialiseError;
      logs.write(`kfn runtime: specialising failed, this pod is spent: ${refused ? err.message : err.stack}\n`);
      const shape = errors.shape(errors.INVALID_LAYERS, err.message);
      await pool.drain(reader, config.MAX_DISCARD_BYTES, 5000);
      this.send(req, res, refused ? 400 : 500, [JSON_TYPE], dump(shape), { keepAlive: false });
      return this.finished(res);
    }
    await this.initialize();
    this.pool.state = 'specialised';
    logs.write(`kfn runtime: specialised in ${this.clock() - started} ms: ${this.describe()}\n`);
    if (this.initError) {
      const [status, headers, body] = this.probe(READY_PATH);
      this.send(req, res, status, headers, body);
    } else {
      this.send(req, res, 200, [JSON_TYPE, ...this.timingHeaders()], dump({ specialised: true }));
    }
    return this.finished(res);
  }

  /**
   * Loads the handler within KFN_INIT_TIMEOUT_MS; past it, loading counts as failed with
   * Runtime.InitTimeout. Only a load that yields (an ES module's top-level await, a pending
   * import) can be overtaken: code that blocks the event loop is seen only when it returns.
   */
  async initialize() {
    const started = this.clock();
    const processStart = timing.readProcessStart();
    // Kfn-Init-Timing's boot: the runtime is loaded and the handler's import begins.
    const bootS = timing.nowSeconds();
    let imported = null;
    let timer;
    const expired = new Promise((resolve) => {
      timer = setTimeout(() => resolve(TIMED_OUT), this.cfg.initTimeoutMs);
    });
    try {
      const loading = loader.loadHandler(this.cfg.taskRoot, this.cfg.handler).then((handler) => {
        imported = timing.nowSeconds();
        return handler;
      });
      const loaded = await Promise.race([loading, expired]);
      if (loaded === TIMED_OUT) {
        logs.write(logs.initReportLine(this.clock() - started, 'timeout'));
        this.failInit(errors.initTimeout(this.cfg.initTimeoutMs));
      } else {
        this.handler = loaded;
      }
    } catch (err) {
      this.failInit(err instanceof loader.InitError ? err.shape : errors.fromThrown(err));
    }
    clearTimeout(timer);
    this.initDurationMs = this.clock() - started;
    this.initTiming = timing.headerValue(processStart, bootS, imported === null ? timing.nowSeconds() : imported);
    this.initialized = true;
    for (const wake of this.initWaiters.splice(0)) wake();
  }

  failInit(shape) {
    this.initError = shape;
    logs.write(logs.errorRecord('', this.clock(), shape));
    logs.write(errors.initErrorLine(shape));
  }

  /** Resolves once loading ended, loaded or failed (it is bounded by the init budget). */
  waitForInit() {
    if (this.initialized) return Promise.resolve();
    return new Promise((resolve) => this.initWaiters.push(resolve));
  }

  /** Stops taking work: readiness fails at once, in-flight requests finish, then exit 0. */
  drain() {
    if (this.draining) return;
    this.draining = true;
    logs.write(`kfn runtime: draining ${this.answering} in-flight request(s)\n`);
    const bound = this.cfg.timeoutMs + config.DRAIN_GRACE_MS;
    setTimeout(() => {
      logs.write(`kfn runtime: drain bound of ${(bound / 1000).toFixed(2)} s passed with ${this.answering} request(s) unanswered\n`);
      this.exit();
    }, bound);
    if (this.answering === 0) this.exit();
  }

  exit() {
    if (this.exiting) return;
    this.exiting = true;
    logs.write('kfn runtime: drained, exiting\n');
    if (this.server) {
      this.server.close();
      if (typeof this.server.closeAllConnections === 'function') this.server.closeAllConnections();
    }
    // Exit once stdout has flushed (it is asynchronous when it is a pipe).
    process.stdout.write('', () => process.exit(0));
  }

  send(req, res, status, headers, body, { keepAlive = true } = {}) {
    this.setHeaders(res, headers);
    res.setHeader('Content-Length', body.length);
    if (!keepAlive || this.draining) res.setHeader('Connection', 'close');
    res.statusCode = status;
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  /**
   * The head of a streamed answer: no length, so Node sends the body chunked to an HTTP/1.1
   * client (an HTTP/1.0 one reads to the connection's end, and a HEAD answer has no body: for
   * those there are no trailers to announce).
   */
  sendStreamHead(req, res, status, headers) {
    const chunked = req.method !== 'HEAD' && req.httpVersion !== '1.0';
    this.setHeaders(res, chunked ? headers : headers.filter(([name]) => name.toLowerCase() !== 'trailer'));
    if (this.draining) res.setHeader('Connection', 'close');
    res.statusCode = status;
  }

  /** Sets headers given as [name, value] pairs, a repeated name's values as a list. */
  setHeaders(res, headers) {
    const names = new Map();
    for (const [name, value] of headers) {
      const key = name.toLowerCase();
      if (names.has(key)) {
        const prior = names.get(key);
        names.set(key, [prior[0], [].concat(prior[1], value)]);
      } else {
        names.set(key, [name, value]);
      }
    }
    for (const [name, value] of names.values()) res.setHeader(name, value);
  }

  /** How a streaming handler's answer is written on res (CONTRACT.md §12). */
  streamer(req, res, ids, httpEvent) {
    return (handler, elapsedS) => new streaming.ResponseStream(res, {
      httpEvent,
      elapsedS,
      extraHeaders: ids,
      highWaterMark: handler[streaming.HIGH_WATER_MARK],
      sendHead: (status, headers) => this.sendStreamHead(req, res, status, headers),
    });
  }

  /**
   * Answers 413 and closes. The unread body is discarded first (up to MAX_DISCARD_BYTES, 5 s):
   * closing a socket with unread input resets the connection, and a client still sending would
   * get that reset instead of the answer. After Expect: 100-continue nothing was sent.
   */
  async refuseBody(req, res, headers, body, status = 413) {
    const expecting = (req.headers.expect || '').toLowerCase() === '100-continue';
    if (!expecting && !req.complete) {
      await new Promise((resolve) => {
        let seen = 0;
        const timer = setTimeout(resolve, 5000);
        const done = () => {
          clearTimeout(timer);
          resolve();
        };
        req.on('data', (chunk) => {
          seen += chunk.length;
          if (seen > config.MAX_DISCARD_BYTES) done();
        });
        req.on('end', done);
        req.on('error', done);
        req.on('close', done);
        req.resume();
      });
    }
    this.send(req, res, status, headers, body, { keepAlive: false });
    return this.finished(res);
  }

  readBody(req) {
    return new Promise((resolve, reject) => {
      const declared = Number(req.headers['content-length'] || 0);
      if (declared > config.MAX_PAYLOAD_BYTES) {
        reject(new BodyTooLargeError());
        return;
      }
      const chunks = [];
      let size = 0;
      let failed = false;
      req.on('data', (chunk) => {
        if (failed) return;
        size += chunk.length;
        if (size > config.MAX_PAYLOAD_BYTES) {
          failed = true;
          reject(new BodyTooLargeError());
          return;
        }
        chunks.push(chunk);
      });
      req.on('end', () => {
        if (!failed) resolve(Buffer.concat(chunks));
      });
      req.on('error', (err) => {
        if (!failed) reject(err);
      });
    });
  }

  onRequest(req, res) {
    const path = req.url.split('?', 1)[0];
    if (!path.startsWith(RESERVED_PREFIX)) {
      this.tracked(() => this.httpEvent(req, res));
      return;
    }
    if (path === INVOKE_PATH && req.method === 'POST') {
      this.tracked(() => this.invoke(req, res));
      return;
    }
    if (path === SPECIALISE_PATH && req.method === 'POST' && this.pool) {
      this.tracked(() => this.specialise(req, res));
      return;
    }
    if (path === SPECIALISE_PATH && req.method === 'POST') {
      // Started with its function: it never becomes another (CONTRACT §13).
      const shape = errors.shape(errors.SPECIALISE_CONFLICT, 'This runtime was started with its function; it cannot be specialised.');
      this.tracked(() => this.refuseBody(req, res, [JSON_TYPE], dump(shape), 409));
      return;
    }
    req.resume();
    if ([READY_PATH, LIVE_PATH, STARTED_PATH].includes(path) && (req.method === 'GET' || req.method === 'HEAD')) {
      const [status, headers, body] = this.probe(path);
      this.send(req, res, status, headers, body);
      return;
    }
    const known = [READY_PATH, LIVE_PATH, STARTED_PATH, INVOKE_PATH].includes(path) || (path === SPECIALISE_PATH && this.pool);
    this.send(req, res, known ? 405 : 404, [JSON_TYPE],
      dump(errors.shape('ResourceNotFoundException', `${req.method} ${path} is not served`)));
  }

  /** Counts a request as in flight until its answer is written, for draining. */
  tracked(answer) {
    this.answering += 1;
    answer()
      .catch((err) => logs.write(`kfn runtime: request failed: ${err && err.stack ? err.stack : err}\n`))
      .finally(() => {
        this.answering -= 1;
        if (this.draining && this.answering === 0) this.exit();
      });
  }

  /** [status, headers, body] of a probe. */
  probe(path) {
    if (path === STARTED_PATH) {
      // For the kubelet's startup probe: the load has ended, loaded or not, and an init error is
      // already in the log. The pod's `started` turning true tells the operator to look for it.
      // A pool runtime has started once it listens: it loads nothing until specialised.
      const started = this.initialized || this.pool !== null;
      return [started ? 200 : 503, [JSON_TYPE, ...this.timingHeaders()], dump({ status: started ? 'started' : 'initializing' })];
    }
    const nowMs = this.clock();
    const deadlinesMs = [...this.slots.values()];
    if (path === LIVE_PATH) {
      const v = health.liveness({ deadlinesMs, concurrency: this.cfg.concurrency, nowMs, stuckGraceMs: this.cfg.stuckGraceMs });
      return [v.ok ? 200 : 503, [JSON_TYPE], dump({ status: v.reason })];
    }
    if (this.pool && this.pool.state !== 'specialised') {
      // Never Kfn-Init-Error: no handler was loaded, so none failed to.
      return [503, [JSON_TYPE, [POOL_HEADER, this.pool.state]], dump({ status: this.draining ? 'draining' : `pool ${this.pool.state}` })];
    }
    if (this.initError && !this.draining) {
      return [503, [JSON_TYPE, [errors.INIT_ERROR_HEADER, this.initError.errorType], ...this.timingHeaders()], dump(this.initError)];
    }
    const v = health.readiness({
      initialized: this.initialized, initFailed: this.initError !== null, draining: this.draining,
      deadlinesMs, concurrency: this.cfg.concurrency, nowMs,
    });
    return [v.ok ? 200 : 503, [JSON_TYPE, ...this.timingHeaders()], dump({ status: v.reason })];
  }

  /** Kfn-Init-Timing once loading ended (the readiness and startup probes carry it). */
  timingHeaders() {
    return this.initTiming === null ? [] : [[timing.HEADER, this.initTiming]];
  }

  async finished(res) {
    if (res.writableFinished) return;
    await new Promise((resolve) => {
      res.once('finish', resolve);
      res.once('close', resolve);
    });
  }

  async invoke(req, res) {
    const rid = req.headers['kfn-request-id'] || crypto.randomUUID();
    const ids = [['Kfn-Request-Id', rid]];
    let raw;
    try {
      raw = await this.readBody(req);
    } catch (err) {
      if (!(err instanceof BodyTooLargeError)) throw err;
      const shape = errors.shape(errors.REQUEST_TOO_LARGE,
        `Request must be smaller than ${config.MAX_PAYLOAD_BYTES} bytes for the InvokeFunction operation`);
      return this.refuseBody(req, res, [JSON_TYPE, ...ids], dump(shape));
    }
    let event;
    try {
      const text = raw.toString('utf-8');
      event = text.trim() ? JSON.parse(text) : {};
    } catch (err) {
      const shape = errors.shape(errors.INVALID_REQUEST_CONTENT, `Could not parse request body into json: ${err.message}`);
      this.send(req, res, 400, [JSON_TYPE, ...ids], dump(shape));
      return this.finished(res);
    }
    const tail = req.headers['kfn-log-type'] === 'Tail';
    if (tail) logs.capture(rid);
    let status, headers, body, outcome;
    try {
      outcome = await this.call(event, {
        rid,
        timeoutMs: timeoutFrom(req.headers['kfn-timeout-ms'], this.cfg.timeoutMs),
        invocationType: req.headers['kfn-invocation-type'] || 'RequestResponse',
        clientContext: context.parseClientContext(req.headers['kfn-client-context']),
        stream: this.streamer(req, res, ids, false),
      });
      // A streamed answer's head went out with its first chunk: it has no log tail.
      if (outcome.kind !== 'streamed') {
        [status, headers, body] = invokeResponse(outcome);
        if (outcome.kind === 'ok' && status !== 200) logs.write(logs.errorRecord(rid, this.clock(), JSON.parse(body)), rid);
      }
    } finally {
      if (tail) {
        const result = logs.release(rid);
        if (headers) headers = [...headers, ['Kfn-Log-Result', result]];
      }
    }
    if (outcome.kind === 'streamed') return this.finished(res);
    this.send(req, res, status, [...headers, ...ids], body);
    return this.finished(res);
  }

  async httpEvent(req, res) {
    const receivedMs = this.clock();
    const rid = req.headers['kfn-request-id'] || crypto.randomUUID();
    const ids = [['Kfn-Request-Id', rid]];
    let raw;
    try {
      raw = await this.readBody(req);
    } catch (err) {
      if (!(err instanceof BodyTooLargeError)) throw err;
      const [, headers, body] = gateway(413, 'Request Entity Too Large');
      return this.refuseBody(req, res, [...headers, ...ids], body);
    }
    const payloadFormat = events.payloadFormat(req.headers['kfn-payload-format']);
    const event = events.toEvent({
      method: req.method,
      target: req.url,
      protocol: `HTTP/${req.httpVersion}`,
      rawHeaders: req.rawHeaders,
      body: raw,
      peer: req.socket.remoteAddress || '',
    }, {
      requestId: rid,
      nowMs: receivedMs,
      apiId: this.cfg.functionName,
      payloadFormat,
      pathPrefix: req.headers['kfn-path-prefix'] || '',
      targetGroupArn: this.cfg.targetGroupArn,
    });
    const outcome = await this.call(event, {
      rid,
      timeoutMs: timeoutFrom(req.headers['kfn-timeout-ms'], this.cfg.timeoutMs),
      invocationType: 'RequestResponse',
      clientContext: undefined,
      stream: this.streamer(req, res, ids, true),
    });
    if (outcome.kind === 'streamed') return this.finished(res);
    const [status, headers, body, problem] = httpResponse(outcome, payloadFormat);
    if (problem) logs.write(logs.errorRecord(rid, this.clock(), errors.shape(errors.INVALID_RESPONSE, problem)));
    this.send(req, res, status, [...headers, ...ids], body);
    return this.finished(res);
  }

  /**
   * Runs the handler once within its timeout and the concurrency limit; resolves with an outcome.
   * The timeout counts from the handler's start: waiting for the load is not the invocation's time.
   * A streaming handler (streaming.isStreaming) writes its answer itself, on the stream that
   * stream(handler) makes, within the same deadline; its outcome is then {kind: 'streamed'}.
   */
  async call(event, { rid, timeoutMs, invocationType, clientContext, stream = null }) {
    const message = errors.timeoutMessage(timeoutMs);
    const timeout = { kind: 'timeout', error: errors.shape(errors.TIMEOUT, message) };
    if (this.draining) {
      return { kind: 'draining', error: errors.shape(errors.SERVICE_UNAVAILABLE, 'The runtime is shutting down; the request was not started.') };
    }
    if (this.pool && this.pool.state === 'spent') {
      return { kind: 'pool_spent', error: errors.shape(errors.POOL_SPENT, 'This pool runtime failed to specialise and serves nothing; the request was not started.') };
    }
    if (this.pool && this.pool.state !== 'specialised') {
      return {
        kind: 'pool_waiting',
        state: this.pool.state,
        error: errors.shape(errors.SERVICE_UNAVAILABLE, `This pool runtime has no function yet (${this.pool.state}); the request was not started.`),
      };
    }
    await this.waitForInit();
    if (this.initError || !this.handler) return { kind: 'init_error', error: this.initError };
    if (this.slots.size >= this.cfg.concurrency) {
      return {
        kind: 'busy',
        error: errors.shape(errors.TOO_MANY_REQUESTS,
          `Rate Exceeded: ${this.slots.size} of ${this.cfg.concurrency} concurrent invocations in flight`),
      };
    }
    const deadlineMs = this.clock() + timeoutMs;
    const slot = ++this.slotIds;
    this.slots.set(slot, deadlineMs);
    const started = process.hrtime.bigint();
    logs.write(logs.startLine(rid, this.cfg.functionVersion), rid);
    const makeCtx = (settle) => context.makeContext({
      cfg: this.cfg, requestId: rid, deadlineMs, invocationType, clientContext, settle, clock: this.clock,
    });
    const handler = this.handler;
    const elapsedS = () => Number(process.hrtime.bigint() - started) / 1e9;
    const responseStream = stream && streaming.isStreaming(handler) ? stream(handler, elapsedS) : null;
    const running = logs.requestStore.run(rid, () => (responseStream
      ? streaming.run(handler, event, makeCtx(() => {}), responseStream)
      : callHandler(handler, event, makeCtx)));
    running.then(() => this.slots.delete(slot), () => this.slots.delete(slot));
    let timer;
    const expired = new Promise((resolve) => {
      timer = setTimeout(() => resolve({ kind: 'timeout' }), Math.max(0, deadlineMs - this.clock()));
    });
    const settled = await Promise.race([
      running.then((result) => ({ kind: 'ok', result }), (err) => ({ kind: 'error', err })),
      expired,
    ]);
    clearTimeout(timer);
    let outcome;
    if (responseStream && settled.kind === 'ok') {
      outcome = { kind: 'streamed' };
    } else if (settled.kind === 'timeout' || this.clock() > deadlineMs) {
      outcome = timeout;
      logs.write(logs.timeoutRecord(rid, this.clock(), message), rid);
    } else if (settled.kind === 'error') {
      outcome = { kind: 'error', error: errors.fromThrown(settled.err) };
      logs.write(logs.errorRecord(rid, this.clock(), outcome.error), rid);
    } else {
      outcome = { kind: 'ok', result: settled.result };
    }
    if (responseStream && outcome.kind !== 'streamed' && responseStream.fail(outcome.error)) {
      // Failed after the head went out: the trailers tell, the status cannot.
      outcome = { kind: 'streamed', error: outcome.error, timedOut: outcome.kind === 'timeout' };
    }
    // A stream's duration is the figure its trailer carried: the handler's time to its end.
    const durationS = responseStream && typeof responseStream.durationS === 'number' ? responseStream.durationS : elapsedS();
    outcome = { ...outcome, durationS };
    const durationMs = durationS * 1000;
    const initDurationMs = this.initDurationMs;
    this.initDurationMs = null;
    const timedOut = outcome.kind === 'timeout' || outcome.timedOut;
    const status = timedOut ? 'timeout' : (outcome.kind === 'error' || outcome.error ? 'error' : 'success');
    logs.write(logs.endLine(rid, status), rid);
    logs.write(logs.reportLine(rid, {
      durationMs, memoryMb: this.cfg.memoryMb, maxMemoryUsedMb: logs.maxMemoryUsedMb(), initDurationMs,
      status: timedOut ? 'timeout' : undefined, outcome: status,
    }), rid);
    return outcome;
  }
}

module.exports = { Runtime, callHandler, invokeResponse, httpResponse, timeoutFrom };
