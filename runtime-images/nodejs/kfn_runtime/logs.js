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
 *
 * Lambda's JSON log format (AWS_LAMBDA_LOG_FORMAT=JSON, CONTRACT.md §10b) makes every console
 * record one JSON object {timestamp, level, requestId, message} (with errorType, errorMessage
 * and stackTrace for an Error), filtered by AWS_LAMBDA_LOG_LEVEL, and START/END/REPORT
 * platform.* records, filtered by KFN_SYSTEM_LOG_LEVEL. install() reads the choice once; Text,
 * the default, is unchanged.
 */
const { AsyncLocalStorage } = require('async_hooks');
const util = require('util');

const requestStore = new AsyncLocalStorage();

/** Lambda's log levels, least severe first. */
const LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];
const TEXT = Object.freeze({ json: false, applicationLevel: 'INFO', systemLevel: 'INFO' });
/** The settings install() chose; the line builders below use them unless given others. */
let active = TEXT;

/** {json, applicationLevel, systemLevel} from the environment; unknown levels count as INFO. */
function settingsFrom(env) {
  if (String(env.AWS_LAMBDA_LOG_FORMAT || '').trim().toUpperCase() !== 'JSON') return TEXT;
  const level = (name) => {
    let value = String(env[name] || '').trim().toUpperCase();
    value = { WARNING: 'WARN', CRITICAL: 'FATAL' }[value] || value;
    return LEVELS.includes(value) ? value : 'INFO';
  };
  return Object.freeze({ json: true, applicationLevel: level('AWS_LAMBDA_LOG_LEVEL'), systemLevel: level('KFN_SYSTEM_LOG_LEVEL') });
}

/** Whether a record of level is written: always in Text (Lambda filters JSON logs only). */
function writes(settings, level, system = false) {
  if (!settings.json) return true;
  return LEVELS.indexOf(level) >= LEVELS.indexOf(system ? settings.systemLevel : settings.applicationLevel);
}

function jsonLine(record) {
  return JSON.stringify(record) + '\n';
}

/** An application record in Lambda's JSON format (requestId within an invocation). */
function appRecord(level, rid, now, message, fields = {}) {
  const record = { timestamp: new Date(now).toISOString(), level, requestId: rid || undefined, message, ...fields };
  return jsonLine(record);
}

/** A platform record, {time, type: platform.<kind>, record}, as Lambda's. */
function platformLine(kind, now, record) {
  return jsonLine({ time: new Date(now).toISOString(), type: `platform.${kind}`, record });
}

function currentRequestId() {
  return requestStore.getStore() || '';
}

/** START, or JSON's platform.start (INFO). */
function startLine(rid, version, settings = active, now = Date.now()) {
  if (settings.json) return writes(settings, 'INFO', true) ? platformLine('start', now, { requestId: rid, version }) : '';
  return `START RequestId: ${rid} Version: ${version}\n`;
}

/** END, or JSON's platform.runtimeDone (DEBUG); status: success, error or timeout. */
function endLine(rid, status = 'success', settings = active, now = Date.now()) {
  if (settings.json) return writes(settings, 'DEBUG', true) ? platformLine('runtimeDone', now, { requestId: rid, status }) : '';
  return `END RequestId: ${rid}\n`;
}

/** Lambda's REPORT line: tab-separated fields, billed time rounded up to the millisecond. */
/** Lambda's INIT_REPORT line, written when the init phase ended other than by loading. */
function initReportLine(durationMs, status, settings = active) {
  if (settings.json) {
    if (!writes(settings, 'INFO', true)) return '';
    return platformLine('initReport', Date.now(), {
      initializationType: 'on-demand', phase: 'init', status, metrics: { durationMs: round2(durationMs) },
    });
  }
  return `INIT_REPORT Init Duration: ${durationMs.toFixed(2)} ms\tPhase: init\tStatus: ${status}\n`;
}

function round2(ms) {
  return Math.round(ms * 100) / 100;
}

/**
 * Lambda's REPORT line, or JSON's platform.report (INFO) with the same figures as metrics and
 * the outcome (success, error or timeout) as status.
 */
function reportLine(rid, { durationMs, memoryMb, maxMemoryUsedMb, initDurationMs, status, outcome = 'success' }, settings = active, now = Date.now()) {
  if (settings.json) {
    if (!writes(settings, 'INFO', true)) return '';
    const metrics = {
      durationMs: round2(durationMs), billedDurationMs: Math.max(1, Math.ceil(durationMs)), memorySizeMB: memoryMb, maxMemoryUsedMB: maxMemoryUsedMb,
    };
    if (initDurationMs !== undefined && initDurationMs !== null) metrics.initDurationMs = round2(initDurationMs);
    return platformLine('report', now, { requestId: rid, metrics, status: outcome });
  }
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

/** A console record: Lambda's Node line, or a JSON record (empty when its level is filtered). */
function record(level, rid, message, now, fields = {}, settings = active) {
  if (settings.json) return writes(settings, level) ? appRecord(level, rid, now, message, fields) : '';
  return `${new Date(now).toISOString()}\t${rid}\t${level}\t${message}`.replace(/\n/g, '\r') + '\n';
}

/** An ERROR record for an error shape, on one line, as Lambda's Node runtime prints it. */
function errorRecord(rid, now, shape, settings = active) {
  if (settings.json) {
    const { errorType, errorMessage, stackTrace } = shape;
    return record('ERROR', rid, errorMessage, now, { errorType, errorMessage, stackTrace }, settings);
  }
  return record('ERROR', rid || '', `Invoke Error \t${JSON.stringify(shape)}`, now, {}, settings);
}

/** The line saying an invocation timed out: <time>\t<request id>\t<message>, or JSON ERROR. */
function timeoutRecord(rid, now, message, settings = active) {
  if (settings.json) return record('ERROR', rid, message, now, {}, settings);
  return `${new Date(now).toISOString()}\t${rid}\t${message}\n`;
}

/** errorType, errorMessage and stackTrace of the first Error among console arguments. */
function errorFields(args) {
  const err = args.find((arg) => arg instanceof Error);
  if (!err) return {};
  return { errorType: err.name, errorMessage: err.message, stackTrace: String(err.stack || '').split('\n') };
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
  if (!text) return;
  process.stdout.write(text);
  keep(rid, text);
}

/**
 * Replaces the console methods so that handler output carries the request id and level, in the
 * chosen format (JSON adds console.fatal, as Lambda's runtime does, and drops the records below
 * the application's level).
 */
function install(settings = TEXT) {
  active = settings;
  const levels = { log: 'INFO', info: 'INFO', warn: 'WARN', error: 'ERROR', debug: 'DEBUG', trace: 'TRACE' };
  if (settings.json) levels.fatal = 'FATAL';
  for (const [method, level] of Object.entries(levels)) {
    if (!writes(settings, level)) {
      console[method] = () => {};
      continue;
    }
    console[method] = (...args) => {
      let message = util.format(...args);
      if (method === 'trace') message += '\n' + new Error().stack.split('\n').slice(2).join('\n');
      const rid = currentRequestId();
      write(record(level, rid, message, Date.now(), settings.json ? errorFields(args) : {}), rid);
    };
  }
}

module.exports = {
  requestStore, currentRequestId, startLine, endLine, initReportLine, reportLine, errorRecord, record,
  timeoutRecord, maxMemoryUsedMb, write, install, capture, release, TAIL_BYTES, LEVELS, settingsFrom,
};
