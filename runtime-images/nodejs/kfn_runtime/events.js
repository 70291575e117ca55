'use strict';
/**
 * Pure mapping between raw HTTP and the events Lambda receives from HTTP services.
 * A request that is not for the runtime's own /_kfn/ paths becomes an event in the payload format
 * its route asks for (Kfn-Payload-Format): API Gateway HTTP API payload v2.0 as a function URL
 * sends it (the default), the REST API proxy integration's payload 1.0, or an Application Load
 * Balancer target's ('alb'); the handler's result is turned back into HTTP by that service's
 * rules. A route may strip its prefix from the path the handler sees (Kfn-Path-Prefix).
 * Nothing here does I/O or reads the clock: request id, time and peer are passed in.
 * Kept identical in behaviour to the Python runtime's events.py.
 */

const CONTROL_HEADER_PREFIX = 'kfn-';
const HOP_BY_HOP = new Set(['connection', 'content-length', 'keep-alive', 'transfer-encoding', 'upgrade', 'trailer']);
// The runtime's mark on a request it refused unstarted: a handler cannot send it.
const NOT_STARTED = 'kfn-not-started';
// The handler's time, measured by the runtime: a handler cannot send its own.
const HANDLER_DURATION = 'kfn-handler-duration';
const TEXT_SUBTYPE_SUFFIXES = ['json', 'xml', 'javascript', 'x-www-form-urlencoded', 'yaml', 'csv'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

// The payload formats (Kfn-Payload-Format); anything else, or none, is V2.
const V2 = '2.0';
const V1 = '1.0';
const ALB = 'alb';
const PAYLOAD_FORMATS = new Set([V2, V1, ALB]);
// What each format's service answers when the function failed or its result was malformed.
const FAILURE_MESSAGES = { [V2]: 'Internal Server Error', [V1]: 'Internal server error', [ALB]: 'Bad Gateway' };
const V1_IDENTITY_NULLS = [
  'accessKey', 'accountId', 'caller', 'cognitoAuthenticationProvider', 'cognitoAuthenticationType',
  'cognitoIdentityId', 'cognitoIdentityPoolId', 'principalOrgId', 'sourceIp', 'user', 'userAgent', 'userArn',
];
const own = (obj, key) => Object.prototype.hasOwnProperty.call(obj, key);

class InvalidResultError extends Error {}

/** The format a Kfn-Payload-Format header names; 2.0 when absent or unknown. */
function payloadFormat(header) {
  return PAYLOAD_FORMATS.has(header) ? header : V2;
}

/** path below prefix (whole segments), always starting with '/'; a path outside it is left as is. */
function stripPrefix(path, prefix) {
  const p = (prefix || '').replace(/\/+$/, '');
  if (!p || !path.startsWith(p)) return path;
  const rest = path.slice(p.length);
  if (!rest) return '/';
  return rest.startsWith('/') ? rest : path;
}

/** Whether a body of this media type is passed to the handler as text rather than base64. */
function isText(contentType) {
  const media = (contentType || '').split(';', 1)[0].trim().toLowerCase();
  if (!media) return false;
  const slash = media.indexOf('/');
  const kind = slash < 0 ? media : media.slice(0, slash);
  const subtype = slash < 0 ? '' : media.slice(slash + 1);
  return kind === 'text' || TEXT_SUBTYPE_SUFFIXES.some((s) => subtype.endsWith(s));
}

/** '/a/b?x=1' -> ['/a/b', 'x=1']; an absolute-form target keeps only its path. */
function splitTarget(target) {
  let rest = target;
  const scheme = rest.indexOf('://');
  if (scheme >= 0) {
    const slash = rest.indexOf('/', scheme + 3);
    rest = slash < 0 ? '/' : rest.slice(slash);
  }
  const q = rest.indexOf('?');
  const path = q < 0 ? rest : rest.slice(0, q);
  const query = q < 0 ? '' : rest.slice(q + 1);
  return [path || '/', query];
}

function decodeComponent(s) {
  const plus = s.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(plus);
  } catch (e) {
    return plus;
  }
}

/** Decoded parameters, repeated names comma-joined in order, as API Gateway v2 does. */
function queryParameters(rawQuery) {
  return Object.fromEntries(Object.entries(multiQuery(rawQuery)).map(([name, values]) => [name, values.join(',')]));
}

/** Lower-cased headers with repeats comma-joined, and cookies split out of Cookie. rawHeaders is [name, value, ...]. */
function foldHeaders(rawHeaders) {
  const headers = {};
  const cookies = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const key = rawHeaders[i].toLowerCase();
    const value = rawHeaders[i + 1];
    if (key === 'cookie') {
      for (const c of value.split(';')) if (c.trim()) cookies.push(c.trim());
      continue;
    }
    if (key.startsWith(CONTROL_HEADER_PREFIX)) continue;
    headers[key] = Object.prototype.hasOwnProperty.call(headers, key) ? `${headers[key]},${value}` : value;
  }
  return [headers, cookies];
}

function clfTime(epochMs) {
  const d = new Date(epochMs);
  const pad = (n) => String(n).padStart(2, '0');
  return `${pad(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`;
}

function domainOf(host) {
  return host.endsWith(']') || host.lastIndexOf(':') < 0 ? host : host.slice(0, host.lastIndexOf(':'));
}

/** The first X-Forwarded-For entry when a proxy in front set one, else the peer. */
function sourceIp(forwardedFor, peer) {
  return (forwardedFor || '').split(',', 1)[0].trim() || peer;
}

/** [body, isBase64Encoded]: text as a string, anything else base64; null when empty. */
function eventBody(raw, contentType) {
  if (!raw || !raw.length) return [null, false];
  if (isText(contentType)) {
    try {
      return [new TextDecoder('utf-8', { fatal: true }).decode(raw), false];
    } catch (e) {
      // not UTF-8: base64 below
    }
  }
  return [Buffer.from(raw).toString('base64'), true];
}

/**
 * The event for a raw request {method, target, protocol, rawHeaders, body: Buffer, peer} in
 * payloadFormat, its path below pathPrefix. apiId names the API (2.0, 1.0), targetGroupArn the
 * load balancer's target group (alb).
 */
function toEvent(request, { requestId, nowMs, apiId, payloadFormat = V2, pathPrefix = '', targetGroupArn = '' }) {
  if (payloadFormat === V1) return v1Event(request, { requestId, nowMs, apiId, pathPrefix });
  if (payloadFormat === ALB) return albEvent(request, { pathPrefix, targetGroupArn });
  return v2Event(request, { requestId, nowMs, apiId, pathPrefix });
}

/** The function-URL event; keys a function URL leaves out when empty (cookies, queryStringParameters, body) are left out. */
function v2Event(request, { requestId, nowMs, apiId, pathPrefix }) {
  const [fullPath, rawQuery] = splitTarget(request.target);
  const rawPath = stripPrefix(fullPath, pathPrefix);
  const [headers, cookies] = foldHeaders(request.rawHeaders);
  const domain = domainOf(headers.host || 'localhost');
  const event = { version: '2.0', routeKey: '$default', rawPath, rawQueryString: rawQuery };
  if (cookies.length) event.cookies = cookies;
  event.headers = headers;
  if (rawQuery) event.queryStringParameters = queryParameters(rawQuery);
  event.requestContext = {
    accountId: 'anonymous',
    apiId,
    domainName: domain,
    domainPrefix: domain.split('.', 1)[0],
    http: {
      method: request.method,
      path: rawPath,
      protocol: request.protocol,
      sourceIp: sourceIp(headers['x-forwarded-for'], request.peer),
      userAgent: headers['user-agent'] || '',
    },
    requestId,
    routeKey: '$default',
    stage: '$default',
    time: clfTime(nowMs),
    timeEpoch: nowMs,
  };
  const [body, encoded] = eventBody(request.body, headers['content-type']);
  if (body !== null) event.body = body;
  event.isBase64Encoded = encoded;
  return event;
}

/** Every header's values in order, under its name as first sent; control headers left out. */
function multiHeaders(rawHeaders) {
  const spelled = new Map();
  const values = {};
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    const key = name.toLowerCase();
    if (key.startsWith(CONTROL_HEADER_PREFIX)) continue;
    if (!spelled.has(key)) spelled.set(key, name);
    const as = spelled.get(key);
    (values[as] = values[as] || []).push(rawHeaders[i + 1]);
  }
  return values;
}

/** Decoded parameters, every value of a repeated name in order (1.0's multiValue lists). */
function multiQuery(rawQuery) {
  const params = {};
  for (const part of rawQuery.split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const name = decodeComponent(eq < 0 ? part : part.slice(0, eq));
    const value = eq < 0 ? '' : decodeComponent(part.slice(eq + 1));
    (params[name] = own(params, name) ? params[name] : []).push(value);
  }
  return params;
}

const lastValues = (multi) => Object.fromEntries(Object.entries(multi).map(([k, v]) => [k, v[v.length - 1]]));
const orNull = (obj) => (Object.keys(obj).length ? obj : null);

/**
 * The REST API proxy integration's event (payload 1.0). Header names as the client sent them;
 * headers and queryStringParameters hold each name's last value, the multiValue twins all, null
 * when none. Every path is a resource of its own; requestContext.path keeps the full path.
 */
function v1Event(request, { requestId, nowMs, apiId, pathPrefix }) {
  const [fullPath, rawQuery] = splitTarget(request.target);
  const path = stripPrefix(fullPath, pathPrefix);
  const multi = multiHeaders(request.rawHeaders);
  const headers = lastValues(multi);
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  const query = multiQuery(rawQuery);
  const domain = domainOf(own(lower, 'host') ? lower.host : 'localhost');
  const [body, encoded] = eventBody(request.body, lower['content-type']);
  const identity = Object.fromEntries(V1_IDENTITY_NULLS.map((k) => [k, null]));
  identity.sourceIp = sourceIp(lower['x-forwarded-for'], request.peer);
  identity.userAgent = own(lower, 'user-agent') ? lower['user-agent'] : null;
  return {
    resource: path,
    path,
    httpMethod: request.method,
    headers: orNull(headers),
    multiValueHeaders: orNull(multi),
    queryStringParameters: orNull(lastValues(query)),
    multiValueQueryStringParameters: orNull(query),
    pathParameters: null,
    stageVariables: null,
    requestContext: {
      accountId: 'anonymous',
      apiId,
      domainName: domain,
      domainPrefix: domain.split('.', 1)[0],
      extendedRequestId: requestId,
      httpMethod: request.method,
      identity,
      path: fullPath,
      protocol: request.protocol,
      requestId,
      requestTime: clfTime(nowMs),
      requestTimeEpoch: nowMs,
      resourceId: '$default',
      resourcePath: path,
      stage: '$default',
    },
    body,
    isBase64Encoded: encoded,
  };
}

/**
 * An Application Load Balancer target's event, multi-value headers off: names lower-cased, a
 * repeated header or query parameter keeps its last value, Cookie stays a header, query
 * parameters are not percent-decoded; the body is '' when empty.
 */
function albEvent(request, { pathPrefix, targetGroupArn }) {
  const [fullPath, rawQuery] = splitTarget(request.target);
  const headers = {};
  const raw = request.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const key = raw[i].toLowerCase();
    if (!key.startsWith(CONTROL_HEADER_PREFIX)) headers[key] = raw[i + 1];
  }
  const query = {};
  for (const part of rawQuery.split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    query[eq < 0 ? part : part.slice(0, eq)] = eq < 0 ? '' : part.slice(eq + 1);
  }
  const [body, encoded] = eventBody(request.body, headers['content-type']);
  return {
    requestContext: { elb: { targetGroupArn } },
    httpMethod: request.method,
    path: stripPrefix(fullPath, pathPrefix),
    queryStringParameters: query,
    headers,
    body: body || '',
    isBase64Encoded: encoded,
  };
}

function headerValue(value) {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

/** value as a compact JSON body. Throws TypeError if it is not JSON-serialisable. */
function jsonResponse(value, status = 200) {
  const text = JSON.stringify(value === undefined ? null : value);
  return { status, headers: [['Content-Type', 'application/json']], body: Buffer.from(text, 'utf-8') };
}

const isAbsent = (v) => v === null || v === undefined;

/**
 * The HTTP response {status, headers: [[name, value]], body: Buffer} for a handler's result, by
 * the rules of payloadFormat's service (see events.py's from_result: 2.0 infers a 200 JSON body
 * for anything without statusCode; 1.0 and alb take only a structured response with a string
 * body; 1.0 merges multiValueHeaders; alb's statusDescription is checked, not sent).
 * Throws InvalidResultError for a malformed response.
 */
function fromResult(result, payloadFormat = V2) {
  const isObject = result !== null && typeof result === 'object' && !Array.isArray(result);
  const structured = isObject && own(result, 'statusCode');
  const strict = payloadFormat === V1 || payloadFormat === ALB;
  if (!strict) {
    // A string is the body as it is, as the guides' example answers "Hello from Lambda!".
    if (typeof result === 'string') return { status: 200, headers: [['Content-Type', 'application/json']], body: Buffer.from(result, 'utf-8') };
    if (!structured) return jsonResponse(result);
  } else if (!structured) {
    throw new InvalidResultError(`a ${payloadFormat} result is an object with a statusCode`);
  }
  if (strict && !isAbsent(result.body) && typeof result.body !== 'string') throw new InvalidResultError('body must be a string');
  if (payloadFormat === ALB && !isAbsent(result.statusDescription) && typeof result.statusDescription !== 'string') {
    throw new InvalidResultError('statusDescription must be a string');
  }
  let status = result.statusCode;
  if (typeof status === 'string' && /^\d+$/.test(status)) status = parseInt(status, 10);
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 100 || status > 599) {
    throw new InvalidResultError(`statusCode must be an integer 100-599, got ${JSON.stringify(status)}`);
  }
  const rawHeaders = result.headers || {};
  if (typeof rawHeaders !== 'object' || Array.isArray(rawHeaders)) throw new InvalidResultError('headers must be an object');
  let pairs = Object.entries(rawHeaders);
  if (payloadFormat === V1) pairs = merged(pairs, result.multiValueHeaders);
  const headers = [];
  for (const [name, value] of pairs) {
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || lower === NOT_STARTED || lower === HANDLER_DURATION || value === null || value === undefined) continue;
    headers.push([name, headerValue(value)]);
  }
  if (!headers.some(([name]) => name.toLowerCase() === 'content-type')) headers.push(['Content-Type', 'application/json']);
  const rawCookies = payloadFormat === V2 ? result.cookies || [] : [];
  if (!Array.isArray(rawCookies)) throw new InvalidResultError('cookies must be a list of strings');
  for (const cookie of rawCookies) headers.push(['Set-Cookie', String(cookie)]);
  let body;
  const rawBody = result.body;
  if (rawBody === null || rawBody === undefined) {
    body = Buffer.alloc(0);
  } else if (typeof rawBody === 'string') {
    if (result.isBase64Encoded) {
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(rawBody) || rawBody.length % 4 !== 0) {
        throw new InvalidResultError('body is not valid base64');
      }
      body = Buffer.from(rawBody, 'base64');
    } else {
      body = Buffer.from(rawBody, 'utf-8');
    }
  } else {
    body = Buffer.from(JSON.stringify(rawBody), 'utf-8');
  }
  return { status, headers, body };
}

/** headers with multiValueHeaders merged in, as API Gateway REST does: a name in both takes the list only. */
/**
 * {status, headers} of a streamed answer from its prelude: payload v2's rules for statusCode,
 * headers and cookies, whatever the payload format; the body follows as the stream. Throws
 * InvalidResultError for a malformed prelude.
 */
function streamHead(prelude, defaultContentType) {
  if (prelude === null || typeof prelude !== 'object' || Array.isArray(prelude)) {
    throw new InvalidResultError('the prelude must be an object');
  }
  const given = prelude.headers || {};
  if (typeof given !== 'object' || Array.isArray(given)) throw new InvalidResultError('headers must be an object');
  const typed = Object.keys(given).some((name) => name.toLowerCase() === 'content-type');
  const { status, headers } = fromResult({
    statusCode: own(prelude, 'statusCode') ? prelude.statusCode : 200,
    headers: typed ? given : { ...given, 'Content-Type': defaultContentType },
    cookies: prelude.cookies,
  }, V2);
  return { status, headers };
}

function merged(pairs, multi) {
  if (isAbsent(multi)) return pairs;
  if (typeof multi !== 'object' || Array.isArray(multi)) throw new InvalidResultError('multiValueHeaders must be an object');
  const listed = new Set(Object.keys(multi).map((name) => name.toLowerCase()));
  const out = pairs.filter(([name]) => !listed.has(name.toLowerCase()));
  for (const [name, values] of Object.entries(multi)) {
    if (!Array.isArray(values)) throw new InvalidResultError('multiValueHeaders values must be lists');
    for (const value of values) out.push([name, value]);
  }
  return out;
}

module.exports = {
  CONTROL_HEADER_PREFIX, HOP_BY_HOP, InvalidResultError, isText, splitTarget, queryParameters, foldHeaders,
  toEvent, fromResult, streamHead, jsonResponse, payloadFormat, stripPrefix, FAILURE_MESSAGES, V2, V1, ALB,
};
