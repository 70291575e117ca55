'use strict';
/**
 * A small, strict tar reader (Node has none): what an image layer needs and nothing more.
 *
 * Reads 512-byte ustar headers (POSIX "ustar\0" "00", whose prefix field extends the name, and
 * GNU "ustar  \0", whose same bytes are times), GNU long names and link names ('L', 'K') and
 * PAX extended headers ('x': path, linkpath and size are used, other keys ignored; 'g' ignored
 * whole). Entries are regular files, directories, symbolic links and hard links; any other type
 * (devices, FIFOs, sparse or contiguous files, volume headers...) is refused, as is a header
 * whose checksum is wrong or an archive that ends before its end-of-archive block. Paths and
 * link targets are handed on as the archive spells them: where they may go is layers.js's to say.
 */

const { TruncatedError } = require('./bytes');

const BLOCK = 512;
/** Largest PAX or GNU long-name header body read (they are held in memory). */
const MAX_META_BYTES = 1024 * 1024;

const TYPES = {
  '0': 'file', '\0': 'file', '1': 'link', '2': 'symlink', '5': 'directory',
};
const REFUSED_TYPES = {
  '3': 'a character device', '4': 'a block device', '6': 'a FIFO', '7': 'a contiguous file',
  S: 'a sparse file', V: 'a volume header', M: 'a multi-volume continuation', N: 'an old GNU long name',
  D: 'a GNU directory dump',
};

class TarError extends Error {}

function text(field) {
  const end = field.indexOf(0);
  return field.subarray(0, end < 0 ? field.length : end).toString('utf-8');
}

/** A numeric field: octal digits (NUL- or space-terminated) or GNU's base-256 (high bit set). */
function number(field, what) {
  if (field[0] & 0x80) {
    if (field[0] !== 0x80) throw new TarError(`negative or oversized ${what} in a tar header`);
    let value = 0;
    for (const byte of field.subarray(1)) value = value * 256 + byte;
    if (!Number.isSafeInteger(value)) throw new TarError(`oversized ${what} in a tar header`);
    return value;
  }
  const digits = field.toString('latin1').replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (!/^[0-7]*$/.test(digits)) throw new TarError(`a tar header's ${what} is not octal: ${JSON.stringify(digits)}`);
  return digits ? parseInt(digits, 8) : 0;
}

function checksumOk(header) {
  const stored = number(header.subarray(148, 156), 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : header[i];
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  return stored === unsigned || stored === signed;
}

/** {key: value} of a PAX extended header's records, "<length> <key>=<value>\n" each. */
function paxRecords(data) {
  const records = {};
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    const lengthText = space < 0 ? '' : data.subarray(pos, space).toString('latin1');
    const length = /^[1-9]\d*$/.test(lengthText) ? Number(lengthText) : 0;
    if (length === 0 || pos + length > data.length || data[pos + length - 1] !== 0x0a) {
      throw new TarError('a malformed PAX extended header');
    }
    const record = data.subarray(space + 1, pos + length - 1).toString('utf-8');
    const equals = record.indexOf('=');
    if (equals <= 0) throw new TarError('a malformed PAX extended header record');
    records[record.slice(0, equals)] = record.slice(equals + 1);
    pos += length;
  }
  return records;
}

function padding(size) {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/**
 * Yields the archive's entries from a ByteReader (bytes.js), one at a time:
 * {type: 'file' | 'directory' | 'symlink' | 'link', name, linkname, mode, mtime, size, body},
 * body an async iterable of the file's bytes (files only). Whatever of a body the consumer did not
 * read is skipped when it asks for the next entry. Throws TarError on anything it refuses.
 */
async function* entries(reader) {
  let pax = {};
  let longName = null;
  let longLink = null;
  for (;;) {
    let header;
    try {
      header = await reader.read(BLOCK);
    } catch (err) {
      throw truncated(err, 'the archive ends without its end-of-archive blocks');
    }
    if (header.every((b) => b === 0)) {
      if (longName !== null || longLink !== null || Object.keys(pax).length) {
        throw new TarError('the archive ends after an extended header without its entry');
      }
      if (!(await reader.restIsZero())) throw new TarError('data after the end-of-archive block');
      return;
    }
    if (!checksumOk(header)) throw new TarError('a tar header with a wrong checksum');
    const magic = header.subarray(257, 265).toString('latin1');
    const posix = magic === 'ustar\x0000';
    if (!posix && magic !== 'ustar  \x00') throw new TarError('a tar header that is not ustar (pre-POSIX tar)');
    const typeflag = String.fromCharCode(header[156]);
    const size = number(header.subarray(124, 136), 'size');
    const prefix = posix ? text(header.subarray(345, 500)) : '';
    const headerName = prefix ? `${prefix}/${text(header.subarray(0, 100))}` : text(header.subarray(0, 100));

    if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
      if (size > MAX_META_BYTES) throw new TarError(`an extended header of ${size} bytes (at most ${MAX_META_BYTES})`);
      const data = await readBody(reader, size);
      if (typeflag === 'x') {
        const records = paxRecords(data);
        for (const key of Object.keys(records)) {
          if (key.startsWith('GNU.sparse.')) throw new TarError(`${JSON.stringify(headerName)}: a sparse file (PAX ${key})`);
        }
        pax = { ...pax, ...records };
      } else if (typeflag === 'L') {
        longName = text(data);
      } else if (typeflag === 'K') {
        longLink = text(data);
      }
      continue;
    }

    const name = pax.path !== undefined ? pax.path : (longName !== null ? longName : headerName);
    const linkname = pax.linkpath !== undefined ? pax.linkpath : (longLink !== null ? longLink : text(header.subarray(157, 257)));
    let dataSize = size;
    if (pax.size !== undefined) {
      if (!/^\d+$/.test(pax.size) || !Number.isSafeInteger(Number(pax.size))) throw new TarError(`${JSON.stringify(name)}: a bad PAX size`);
      dataSize = Number(pax.size);
    }
    pax = {};
    longName = null;
    longLink = null;

    const type = TYPES[typeflag];
    if (type === undefined) {
      const what = REFUSED_TYPES[typeflag] || `an entry of type ${JSON.stringify(typeflag)}`;
      throw new TarError(`${JSON.stringify(name)}: ${what} is not allowed`);
    }
    if (type === 'file' && name.endsWith('/')) throw new TarError(`${JSON.stringify(name)}: a regular file named as a directory`);
    const entry = {
      type,
      name,
      linkname: type === 'link' || type === 'symlink' ? linkname : '',
      mode: number(header.subarray(100, 108), 'mode'),
      mtime: number(header.subarray(136, 148), 'mtime'),
      size: type === 'file' ? dataSize : 0,
      body: null,
    };
    let left = dataSize;
    if (type === 'file') {
      entry.body = (async function* body() {
        try {
          for await (const piece of reader.take(left)) {
            left -= piece.length;
            yield piece;
          }
        } catch (err) {
          throw truncated(err, `${JSON.stringify(name)}: the archive ends inside this entry`);
        }
      }());
    }
    yield entry;
    try {
      await reader.skip(left + padding(dataSize));
    } catch (err) {
      throw truncated(err, `${JSON.stringify(name)}: the archive ends inside this entry`);
    }
  }
}

async function readBody(reader, size) {
  try {
    const data = await reader.read(size);
    await reader.skip(padding(size));
    return data;
  } catch (err) {
    throw truncated(err, 'the archive ends inside an extended header');
  }
}

/** A TarError saying `message` for a stream that ended early; any other error as it is. */
function truncated(err, message) {
  return err instanceof TruncatedError ? new TarError(message) : err;
}

module.exports = { TarError, entries, paxRecords, BLOCK };
