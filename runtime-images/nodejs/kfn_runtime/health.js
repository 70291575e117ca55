'use strict';
/**
 * Readiness and liveness, decided from the runtime's state with the time passed in.
 *
 * A handler that never settles (or blocks past its deadline) keeps its concurrency slot after its
 * caller got a 504. When every slot is held that way the pod can do no work: it stops being ready
 * (the activator routes elsewhere) and, after stuckGraceMs, stops being live (the kubelet restarts it).
 */

function stuckSince(deadlinesMs, concurrency, nowMs) {
  const overdue = deadlinesMs.filter((d) => d <= nowMs);
  if (overdue.length < concurrency) return null;
  return Math.max(...overdue);
}

function readiness({ initialized, initFailed, draining, deadlinesMs, concurrency, nowMs }) {
  if (draining) return { ok: false, reason: 'draining' };
  if (initFailed) return { ok: false, reason: 'init error' };
  if (!initialized) return { ok: false, reason: 'initializing' };
  if (stuckSince(deadlinesMs, concurrency, nowMs) !== null) {
    return { ok: false, reason: 'every slot is held by a handler past its deadline' };
  }
  return { ok: true, reason: 'ready' };
}

function liveness({ deadlinesMs, concurrency, nowMs, stuckGraceMs }) {
  const since = stuckSince(deadlinesMs, concurrency, nowMs);
  if (since !== null && nowMs - since >= stuckGraceMs) {
    return { ok: false, reason: 'every slot has been held past its deadline too long' };
  }
  return { ok: true, reason: 'live' };
}

module.exports = { stuckSince, readiness, liveness };
