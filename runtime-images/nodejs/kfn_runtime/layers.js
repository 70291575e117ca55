'use strict';
/**
 * Places an image layer's entries (read by tar.js) where a pool pod may write them: only
 * `var/task/...` (into the task root) and `opt/nodejs/...` (into <opt>/nodejs), the two emptyDirs
 * of a Node.js pool pod. The bare directories `var/`, `opt/`, `var/task/`, `opt/nodejs/` and
 * `opt/python/` (and `./`) are passed over; `./` in front of a path is dropped. Refused, each a LayerError naming the entry: any other path, an
 * absolute one or one with a `..`, an OCI whiteout (`.wh.`), a symbolic link whose target leaves
 * its root (lexically: absolute, or `..` past it), a hard link to anything but a file already
 * extracted under the same root, and writing through a symbolic link an earlier entry made (so a
 * link's lexical check is also where it really points). Modes keep their permission bits only
 * (no setuid, setgid or sticky bit); directories get theirs once every layer is in (finish()),
 * so a read-only directory can still be filled.
 */
const fs = require('fs');
const path = require('path');
const tar = require('./tar');

/** Directory entries passed over: the roots themselves and their parents. */
const IGNORED_DIRECTORIES = new Set(['var', 'opt', 'var/task', 'opt/python', 'opt/nodejs']);
const PERMISSIONS = 0o777;

class LayerError extends Error {}

/** The archive path's components; refuses absolute paths, `..` and whiteouts. */
function components(name) {
  const shown = JSON.stringify(name);
  if (name.startsWith('/')) throw new LayerError(`${shown}: an absolute path`);
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new LayerError(`${shown}: a path with '..'`);
  if (parts.some((p) => p.startsWith('.wh.'))) throw new LayerError(`${shown}: an OCI whiteout`);
  if (parts.length === 0) throw new LayerError(`${shown}: an empty path`);
  return parts;
}

/** {root, rest}: which root (its archive prefix, e.g. 'var/task') and the path below it. */
function place(parts, roots, name) {
  const prefix = parts.slice(0, 2).join('/');
  if (parts.length < 3 || !Object.prototype.hasOwnProperty.call(roots, prefix)) {
    throw new LayerError(`${JSON.stringify(name)}: outside ${Object.keys(roots).map((r) => `${r}/`).join(' and ')}`);
  }
  return { root: prefix, rest: parts.slice(2) };
}

/** Whether a symbolic link at `rest` (below its root) pointing at `target` stays in that root. */
function linkStaysInside(rest, target) {
  if (target === '' || target.startsWith('/')) return false;
  const at = rest.slice(0, -1);
  for (const part of target.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (at.length === 0) return false;
      at.pop();
    } else {
      at.push(part);
    }
  }
  return true;
}

async function lstatOrNull(file) {
  try {
    return await fs.promises.lstat(file);
  } catch (err) {
    if (err.code === 'ENOENT') return null;
    throw err;
  }
}

class Extractor {
  /** roots: {'var/task': <task root>, 'opt/nodejs': <opt>/nodejs}, real directories. */
  constructor(roots) {
    this.roots = roots;
    this.directoryModes = new Map();
    this.files = 0;
    this.bytes = 0;
  }

  /** Extracts one tar archive from a ByteReader over its (uncompressed) bytes. */
  async extract(reader) {
    for await (const entry of tar.entries(reader)) {
      await this.place(entry);
    }
  }

  async place(entry) {
    const shown = JSON.stringify(entry.name);
    // The archive's own root ("./"), as `tar -C dir .` writes it, is passed over too.
    if (entry.type === 'directory' && /^(\.?\/)*\.?$/.test(entry.name)) return;
    const parts = components(entry.name);
    if (entry.type === 'directory' && IGNORED_DIRECTORIES.has(parts.join('/'))) return;
    const { root, rest } = place(parts, this.roots, entry.name);
    if (entry.type === 'symlink' && !linkStaysInside(rest, entry.linkname)) {
      throw new LayerError(`${shown}: a symbolic link to ${JSON.stringify(entry.linkname)}, outside ${root}/`);
    }
    const target = entry.type === 'link' ? await this.linkTarget(entry, root, shown) : null;
    const dest = await this.parentsOf(this.roots[root], rest, shown, { make: true });
    if (target === dest) throw new LayerError(`${shown}: a hard link to itself`);
    const mode = entry.mode & PERMISSIONS;
    const existing = await lstatOrNull(dest);
    if (entry.type === 'directory') {
      if (existing && !existing.isDirectory()) await fs.promises.unlink(dest);
      if (!existing || !existing.isDirectory()) await fs.promises.mkdir(dest, { mode: 0o700 });
      this.directoryModes.set(dest, mode);
      return;
    }
    if (existing && existing.isDirectory()) {
      await fs.promises.rm(dest, { recursive: true, force: true });
      for (const dir of [...this.directoryModes.keys()]) {
        if (dir === dest || dir.startsWith(dest + path.sep)) this.directoryModes.delete(dir);
      }
    } else if (existing) {
      await fs.promises.unlink(dest);
    }
    if (entry.type === 'symlink') {
      await fs.promises.symlink(entry.linkname, dest);
    } else if (entry.type === 'link') {
      await fs.promises.link(target, dest);
    } else {
      await this.writeFile(entry, dest, mode);
    }
  }

  /**
   * The destination of `rest` below `base`, its missing parent directories made (0700 until
   * finish()) when `make`, else null if one is missing; refuses a parent that is a symbolic
   * link or not a directory.
   */
  async parentsOf(base, rest, shown, { make }) {
    let at = base;
    for (const part of rest.slice(0, -1)) {
      at = path.join(at, part);
      const stat = await lstatOrNull(at);
      if (stat === null && !make) return null;
      if (stat === null) {
        await fs.promises.mkdir(at, { mode: 0o700 });
        if (!this.directoryModes.has(at)) this.directoryModes.set(at, 0o755);
      } else if (stat.isSymbolicLink()) {
        throw new LayerError(`${shown}: a path through the symbolic link ${JSON.stringify(part)}`);
      } else if (!stat.isDirectory()) {
        throw new LayerError(`${shown}: a path through ${JSON.stringify(part)}, which is not a directory`);
      }
    }
    return path.join(at, rest[rest.length - 1]);
  }

  /** The file a hard link entry names: one extracted before it, under the same root. */
  async linkTarget(entry, root, shown) {
    const outside = new LayerError(`${shown}: a hard link to ${JSON.stringify(entry.linkname)}, outside ${root}/`);
    let placed;
    try {
      placed = place(components(entry.linkname), this.roots, entry.linkname);
    } catch (err) {
      if (err instanceof LayerError) throw outside;
      throw err;
    }
    if (placed.root !== root) throw outside;
    const target = await this.parentsOf(this.roots[root], placed.rest, shown, { make: false });
    const stat = target === null ? null : await lstatOrNull(target);
    if (stat === null || !stat.isFile()) {
      throw new LayerError(`${shown}: a hard link to ${JSON.stringify(entry.linkname)}, which is no file extracted before it`);
    }
    return target;
  }

  async writeFile(entry, dest, mode) {
    // 'wx' (O_CREAT | O_EXCL) creates a new file and never follows a link left at dest.
    const handle = await fs.promises.open(dest, 'wx', 0o600);
    try {
      for await (const piece of entry.body) {
        await handle.write(piece);
        this.bytes += piece.length;
      }
      await handle.chmod(mode);
      if (entry.mtime > 0) await handle.utimes(entry.mtime, entry.mtime);
    } finally {
      await handle.close();
    }
    this.files += 1;
  }

  /** Gives directories their modes, deepest first (call once, after every layer). */
  async finish() {
    const dirs = [...this.directoryModes.keys()].sort((a, b) => b.length - a.length);
    for (const dir of dirs) {
      await fs.promises.chmod(dir, this.directoryModes.get(dir));
    }
  }
}

module.exports = { Extractor, LayerError, components, linkStaysInside, IGNORED_DIRECTORIES };
