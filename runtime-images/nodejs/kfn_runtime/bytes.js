'use strict';
/**
 * Reads a stream (any async iterable of Buffers: a request, a gunzip stream) by exact counts, so
 * that a specialise body (pool.js) and a tar archive (tar.js) can be read piece by piece as they
 * arrive, without holding more than one chunk beyond what the caller asked for.
 */

class TruncatedError extends Error {}

class ByteReader {
  constructor(source) {
    this.iterator = source[Symbol.asyncIterator]();
    this.chunk = Buffer.alloc(0);
    this.ended = false;
  }

  /** Makes this.chunk non-empty; false when the stream ended. */
  async fill() {
    while (this.chunk.length === 0) {
      if (this.ended) return false;
      const { value, done } = await this.iterator.next();
      if (done) {
        this.ended = true;
        return false;
      }
      this.chunk = Buffer.isBuffer(value) ? value : Buffer.from(value);
    }
    return true;
  }

  /** The bytes up to the first '\n' (left out), at most `max` before it; null at the stream's end. */
  async readLine(max) {
    const parts = [];
    let size = 0;
    for (;;) {
      if (!(await this.fill())) {
        if (size === 0) return null;
        throw new TruncatedError(`the stream ended after ${size} bytes without a line end`);
      }
      const end = this.chunk.indexOf(0x0a);
      const part = end < 0 ? this.chunk : this.chunk.subarray(0, end);
      size += part.length;
      if (size > max) throw new TruncatedError(`the first line is longer than ${max} bytes`);
      parts.push(part);
      if (end >= 0) {
        this.chunk = this.chunk.subarray(end + 1);
        return Buffer.concat(parts);
      }
      this.chunk = Buffer.alloc(0);
    }
  }

  /** Yields exactly `count` bytes in pieces; TruncatedError when the stream ends before. */
  async *take(count) {
    let left = count;
    while (left > 0) {
      if (!(await this.fill())) throw new TruncatedError(`the stream ended ${left} bytes early`);
      const piece = this.chunk.length <= left ? this.chunk : this.chunk.subarray(0, left);
      this.chunk = this.chunk.subarray(piece.length);
      left -= piece.length;
      yield piece;
    }
  }

  /** Exactly `count` bytes in one Buffer (for small counts). */
  async read(count) {
    const parts = [];
    for await (const piece of this.take(count)) parts.push(piece);
    return Buffer.concat(parts, count);
  }

  /** Reads and drops `count` bytes. */
  async skip(count) {
    const pieces = this.take(count);
    while (!(await pieces.next()).done) { /* dropped */ }
  }

  /** Whether the stream has no more bytes (it waits for the next chunk or the end to tell). */
  async atEnd() {
    return !(await this.fill());
  }

  /** Reads and drops the rest, up to the end or until more than `max` bytes were dropped. */
  async discard(max) {
    let seen = 0;
    while (seen <= max && (await this.fill())) {
      seen += this.chunk.length;
      this.chunk = Buffer.alloc(0);
    }
  }

  /** Reads to the end; whether every remaining byte was zero. */
  async restIsZero() {
    let zero = true;
    while (await this.fill()) {
      if (zero && this.chunk.some((b) => b !== 0)) zero = false;
      this.chunk = Buffer.alloc(0);
    }
    return zero;
  }
}

module.exports = { ByteReader, TruncatedError };
