'use strict';
/**
 * When this process started, was booted and had its handler imported: Kfn-Init-Timing
 * (CONTRACT.md §2). `start` is the process's own start as the kernel recorded it
 * (/proc/self/stat's starttime, in clock ticks since the machine booted: 10 ms resolution),
 * turned into unix time through the clock it counts on: now - (time since boot now - starttime),
 * the time since boot from /proc/uptime. `boot` is when the runtime, loaded, began to load the
 * handler, `imported` when loading the handler's module ended. All are unix seconds.
 */
const fs = require('fs');

const HEADER = 'Kfn-Init-Timing';
/** /proc counts in USER_HZ ticks, 100 a second on every Linux (Node has no sysconf). */
const CLOCK_TICKS = 100;

/** Unix seconds now, below the millisecond. */
function nowSeconds() {
  return (performance.timeOrigin + performance.now()) / 1000;
}

/**
 * The unix time a process started from its /proc/<pid>/stat line, the clock tick rate, and,
 * read together, the seconds since boot and the unix time now; null if the line does not say.
 */
function processStart(stat, clockTicks, sinceBootS, nowS) {
  // The command name (field 2) is in parentheses and may hold spaces: fields after it are
  // counted from the last ")"; starttime is field 22, the 20th after the name.
  const fields = stat.slice(stat.lastIndexOf(')') + 1).trim().split(/\s+/);
  if (fields.length < 20 || !(clockTicks > 0) || !/^\d+$/.test(fields[19])) return null;
  return nowS - (sinceBootS - Number(fields[19]) / clockTicks);
}

/** This process's start time (unix seconds), or null where /proc cannot tell it. */
function readProcessStart() {
  try {
    const stat = fs.readFileSync('/proc/self/stat', 'latin1');
    const sinceBoot = Number(fs.readFileSync('/proc/uptime', 'latin1').split(/\s+/)[0]);
    const now = nowSeconds();
    if (!Number.isFinite(sinceBoot)) return null;
    return processStart(stat, CLOCK_TICKS, sinceBoot, now);
  } catch (err) {
    return null;
  }
}

/** start=<s>;boot=<s>;imported=<s>, unix seconds with 6 digits; an unknown start is left out. */
function headerValue(start, boot, imported) {
  const parts = start === null || start === undefined ? [] : [`start=${start.toFixed(6)}`];
  parts.push(`boot=${boot.toFixed(6)}`, `imported=${imported.toFixed(6)}`);
  return parts.join(';');
}

module.exports = { HEADER, CLOCK_TICKS, nowSeconds, processStart, readProcessStart, headerValue };
