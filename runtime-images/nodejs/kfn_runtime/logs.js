'use strict';
/**
 * Function logs: every console line a handler writes is tagged with its request id, in Lambda's
 * Node format `<ISO time>\t<request id>\t<LEVEL>\t<message>` (newlines inside a message become \r
 * so that one record stays one line). The request id travels in AsyncLocalStorage, so concurrent
 * invocations are told apart. START/END/REPORT lines are formatted here by pure functions.
 *
 * An invocation asked for its log (`Kfn-Log-Type: Tail`, CONTRACT.md §10a) has its own lines kept
 * as they are written, by request id: capture() starts, release() hands back the last TAIL_BYTES
 * in base64. Concurrent invocations each keep only their own.
 */
const { AsyncLocalStorage } = require('async_hooks');
const util = require('util');

const requestStore = new AsyncLocalStorage();

function currentRequestId() {
  return requestStore.getStore() || '';
}

function startLine(rid, version) {
  return `START RequestId: ${rid} Version: ${version}\n`;
}

function endLine(rid) {
  return `END RequestId: ${rid}\n`;
}

/** Lambda's REPORT line: tab-separated fields, billed time rounded up to the millisecond. */
/** Lambda's INIT_REPORT line, written when the init phase ended other than by loading. */
function initReportLine(durationMs, status) {
  return `INIT_REPORT Init Duration: ${durationMs.toFixed(2)} ms\tPhase: init\tStatus: ${status}\n`;
}

function reportLine(rid, { durationMs, memoryMb, maxMemoryUsedMb, initDurationMs, status }) {
  const fields = [
    `REPORT RequestId: ${rid}`,
    `Duration: ${durationMs.toFixed(2)} ms`,
    `Billed Duration: ${Math.max(1, Math.ceil(durationMs))} ms`,
    `Memory Size: ${memoryMb} MB`,
    `Max Memory Used: ${maxMemoryUsedMb} MB`,
  ];
  if (initDurationMs !== undefined && initDurationMs !== null) fields.push(`Init Duration: ${initDurationMs.toFixed(2)} ms`);
  if (status) fields.push(`Status: ${status}`);
  return fields.join('\t') + '\n';
}

function record(level, rid, message, now) {
  return `${new Date(now).toISOString()}\t${rid}\t${level}\t${message}`.replace(/\n/g, '\r') + '\n';
}

/** An ERROR record for an error shape, on one line, as Lambda's Node runtime prints it. */
function errorRecord(rid, now, shape) {
  return record('ERROR', rid || '', `Invoke Error \t${JSON.stringify(shape)}`, now);
}

function maxMemoryUsedMb() {
  return Math.ceil(process.resourceUsage().maxRSS / 1024);
}

/** How much of an invocation's log is handed back: Lambda's X-Amz-Log-Result holds 4 KB. */
const TAIL_BYTES = 4096;
const captures = new Map();

function capture(rid) {
  captures.set(rid, { parts: [], size: 0 });
}

function keep(rid, text) {
  const kept = rid ? captures.get(rid) : undefined;
  if (!kept) return;
  kept.parts.push(text);
  kept.size += text.length;
  // Only the tail is handed back: drop whole writes from the front past twice its size.
  while (kept.size > 2 * TAIL_BYTES && kept.parts.length > 1) kept.size -= kept.parts.shift().length;
}

/** The last TAIL_BYTES of what was written for rid, base64 (as Lambda cuts its tail). */
function release(rid) {
  const kept = captures.get(rid);
  captures.delete(rid);
  const bytes = Buffer.from(kept ? kept.parts.join('') : '', 'utf-8');
  return bytes.subarray(Math.max(0, bytes.length - TAIL_BYTES)).toString('base64');
}

/** Writes a record; rid: the invocation it belongs to (kept for its log tail when asked). */
function write(text, rid) {
  process.stdout.write(text);
  keep(rid, text);
}

/** Replaces the console methods so that handler output carries the request id and level. */
function install() {
  const levels = { log: 'INFO', info: 'INFO', warn: 'WARN', error: 'ERROR', debug: 'DEBUG', trace: 'TRACE' };
  for (const [method, level] of Object.entries(levels)) {
    console[method] = (...args) => {
      let message = util.format(...args);
      if (method === 'trace') message += '\n' + new Error().stack.split('\n').slice(2).join('\n');
      const rid = currentRequestId();
      write(record(level, rid, message, Date.now()), rid);
    };
  }
}

module.exports = {
  requestStore, currentRequestId, startLine, endLine, initReportLine, reportLine, errorRecord, record,
  maxMemoryUsedMb, write, install, capture, release, TAIL_BYTES,
};
