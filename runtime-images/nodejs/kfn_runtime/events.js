'use strict';
/**
 * Pure mapping between raw HTTP and API Gateway HTTP API payload v2.0, as Lambda function URLs do.
 * A request that is not for the runtime's own /_kfn/ paths becomes a function-URL event; the
 * handler's result is turned back into HTTP with API Gateway's payload v2 response rules.
 * Nothing here does I/O or reads the clock: request id, time and peer are passed in.
 * Kept identical in behaviour to the Python runtime's events.py.
 */

const CONTROL_HEADER_PREFIX = 'kfn-';
const HOP_BY_HOP = new Set(['connection', 'content-length', 'keep-alive', 'transfer-encoding', 'upgrade', 'trailer']);
// The runtime's mark on a request it refused unstarted: a handler cannot send it.
const NOT_STARTED = 'kfn-not-started';
const TEXT_SUBTYPE_SUFFIXES = ['json', 'xml', 'javascript', 'x-www-form-urlencoded', 'yaml', 'csv'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

class InvalidResultError extends Error {}

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
  const params = {};
  for (const part of rawQuery.split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const name = decodeComponent(eq < 0 ? part : part.slice(0, eq));
    const value = eq < 0 ? '' : decodeComponent(part.slice(eq + 1));
    params[name] = Object.prototype.hasOwnProperty.call(params, name) ? `${params[name]},${value}` : value;
  }
  return params;
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

/**
 * The function-URL event for a raw request {method, target, protocol, rawHeaders, body: Buffer, peer}.
 * Keys a function URL leaves out when empty (cookies, queryStringParameters, body) are left out.
 */
function toEvent(request, { requestId, nowMs, apiId }) {
  const [rawPath, rawQuery] = splitTarget(request.target);
  const [headers, cookies] = foldHeaders(request.rawHeaders);
  const host = headers.host || 'localhost';
  const domain = host.endsWith(']') || host.lastIndexOf(':') < 0 ? host : host.slice(0, host.lastIndexOf(':'));
  const forwarded = (headers['x-forwarded-for'] || '').split(',', 1)[0].trim();
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
      sourceIp: forwarded || request.peer,
      userAgent: headers['user-agent'] || '',
    },
    requestId,
    routeKey: '$default',
    stage: '$default',
    time: clfTime(nowMs),
    timeEpoch: nowMs,
  };
  let encoded = false;
  if (request.body && request.body.length) {
    let body = null;
    if (isText(headers['content-type'])) {
      try {
        body = new TextDecoder('utf-8', { fatal: true }).decode(request.body);
      } catch (e) {
        body = null;
      }
    }
    if (body === null) {
      body = Buffer.from(request.body).toString('base64');
      encoded = true;
    }
    event.body = body;
  }
  event.isBase64Encoded = encoded;
  return event;
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

/**
 * The HTTP response {status, headers: [[name, value]], body: Buffer} for a handler's result, by
 * API Gateway's payload v2 rules. Throws InvalidResultError for a malformed structured response.
 */
function fromResult(result) {
  const isObject = result !== null && typeof result === 'object' && !Array.isArray(result);
  if (!(isObject && Object.prototype.hasOwnProperty.call(result, 'statusCode'))) return jsonResponse(result);
  let status = result.statusCode;
  if (typeof status === 'string' && /^\d+$/.test(status)) status = parseInt(status, 10);
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 100 || status > 599) {
    throw new InvalidResultError(`statusCode must be an integer 100-599, got ${JSON.stringify(status)}`);
  }
  const rawHeaders = result.headers || {};
  if (typeof rawHeaders !== 'object' || Array.isArray(rawHeaders)) throw new InvalidResultError('headers must be an object');
  const headers = [];
  for (const [name, value] of Object.entries(rawHeaders)) {
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || lower === NOT_STARTED || value === null || value === undefined) continue;
    headers.push([name, headerValue(value)]);
  }
  if (!headers.some(([name]) => name.toLowerCase() === 'content-type')) headers.push(['Content-Type', 'application/json']);
  const rawCookies = result.cookies || [];
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

module.exports = {
  CONTROL_HEADER_PREFIX, HOP_BY_HOP, InvalidResultError, isText, splitTarget, queryParameters, foldHeaders,
  toEvent, fromResult, jsonResponse,
};
