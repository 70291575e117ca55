'use strict';
/**
 * Runtime pool mode (KFN_POOL=1): a pod started from the bare runtime image, before any function
 * is known, that becomes one function's pod when the activator sends it POST /_kfn/specialise.
 *
 * The body is one line of JSON, {"handler", "env", "layers": [{digest, size, mediaType}]}, then
 * the layers' blobs, concatenated in that order, and nothing after. Each blob is spooled to a
 * temporary file while its sha256 is computed, and extracted (layers.js) only once that matched
 * its digest. This module reads and checks the request and lays out the files; the server
 * (server.js) then sets the environment and loads the handler as a normal start does. Anything
 * wrong with the request is a SpecialiseError, which the server answers with 400.
 */
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const stream = require('stream');
const zlib = require('zlib');
const { ByteReader, TruncatedError } = require('./bytes');
const layers = require('./layers');
const tar = require('./tar');

/** The JSON line's bound, its '\n' not counted. */
const MAX_LINE_BYTES = 1024 * 1024;
/** KFN_POOL_MAX_LAYER_BYTES's default: the blobs' sizes together. */
const DEFAULT_MAX_LAYER_BYTES = 512 * 1024 * 1024;
/** The layer media types taken, and whether each is gzipped. */
const MEDIA_TYPES = {
  'application/vnd.oci.image.layer.v1.tar': false,
  'application/vnd.oci.image.layer.v1.tar+gzip': true,
  'application/vnd.docker.image.rootfs.diff.tar.gzip': true,
};
const DIGEST = /^sha256:[0-9a-f]{64}$/;
/** A variable name as a process environment can hold it. */
const ENV_NAME = /^[^=\0]+$/;

class SpecialiseError extends Error {}

/** Whether the runtime starts in pool mode. */
function enabled(env) {
  return (env.KFN_POOL || '').trim() === '1';
}

/**
 * What pool mode reads from the pod's environment, at start: the largest total of blob bytes
 * taken, and where layers go: the task root (LAMBDA_TASK_ROOT) and <opt>/nodejs, <opt> being
 * /opt or, in tests of the runtime outside its image, KFN_OPT_ROOT (the same directory the
 * loader looks in, loader.layerPaths).
 */
function settings(podEnv) {
  const raw = (podEnv.KFN_POOL_MAX_LAYER_BYTES || '').trim();
  if (raw && !/^\d+$/.test(raw)) throw new Error(`kfn runtime: KFN_POOL_MAX_LAYER_BYTES=${JSON.stringify(raw)} is not an integer`);
  const opt = (podEnv.KFN_OPT_ROOT || '').trim() || '/opt';
  return {
    maxLayerBytes: raw ? Number(raw) : DEFAULT_MAX_LAYER_BYTES,
    roots: {
      'var/task': (podEnv.LAMBDA_TASK_ROOT || '').trim() || '/var/task',
      'opt/nodejs': path.join(opt, 'nodejs'),
    },
  };
}

/** The request line's {handler, env, layers}, checked; layers carry `gzip`. Unknown keys are ignored. */
function parseRequest(line, maxLayerBytes) {
  let body;
  try {
    body = JSON.parse(line.toString('utf-8'));
  } catch (err) {
    throw new SpecialiseError(`the first line is not JSON: ${err.message}`);
  }
  const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObject(body)) throw new SpecialiseError('the first line is not a JSON object');
  if (typeof body.handler !== 'string' || !body.handler) throw new SpecialiseError('"handler" is not a non-empty string');
  if (!isObject(body.env)) throw new SpecialiseError('"env" is not an object');
  for (const [name, value] of Object.entries(body.env)) {
    if (!ENV_NAME.test(name)) throw new SpecialiseError(`"env" has the name ${JSON.stringify(name)}, which no environment can hold`);
    if (typeof value !== 'string' || value.includes('\0')) {
      throw new SpecialiseError(`"env" ${JSON.stringify(name)} is not a string without NUL`);
    }
  }
  if (!Array.isArray(body.layers)) throw new SpecialiseError('"layers" is not a list');
  let total = 0;
  const parsed = body.layers.map((layer, i) => {
    if (!isObject(layer)) throw new SpecialiseError(`layer ${i} is not an object`);
    const { digest, size, mediaType } = layer;
    if (typeof digest !== 'string' || !DIGEST.test(digest)) throw new SpecialiseError(`layer ${i}: "digest" is not sha256:<64 hex digits>`);
    if (!Number.isSafeInteger(size) || size < 0) throw new SpecialiseError(`layer ${digest}: "size" is not a byte count`);
    if (!Object.prototype.hasOwnProperty.call(MEDIA_TYPES, mediaType)) {
      throw new SpecialiseError(`layer ${digest}: the media type ${JSON.stringify(mediaType)} is not a tar or gzipped tar layer`);
    }
    total += size;
    return { digest, size, mediaType, gzip: MEDIA_TYPES[mediaType] };
  });
  if (total > maxLayerBytes) {
    throw new SpecialiseError(`the layers are ${total} bytes, more than KFN_POOL_MAX_LAYER_BYTES=${maxLayerBytes}`);
  }
  return { handler: body.handler, env: body.env, layers: parsed };
}

/** Writes the next `layer.size` bytes to `file`, then checks their sha256 against the digest. */
async function spool(reader, layer, file) {
  const hash = crypto.createHash('sha256');
  const handle = await fs.promises.open(file, 'wx', 0o600);
  try {
    for await (const piece of reader.take(layer.size)) {
      hash.update(piece);
      await handle.write(piece);
    }
  } catch (err) {
    if (err instanceof TruncatedError) throw new SpecialiseError(`layer ${layer.digest}: the body ends before its ${layer.size} bytes`);
    throw err;
  } finally {
    await handle.close();
  }
  const got = hash.digest('hex');
  if (`sha256:${got}` !== layer.digest) {
    throw new SpecialiseError(`layer ${layer.digest}: its bytes' digest is sha256:${got}`);
  }
}

/** Extracts a spooled (and verified) blob, gunzipped when its media type says so. */
async function unpack(file, layer, extractor) {
  const source = fs.createReadStream(file);
  const bytes = layer.gzip ? stream.pipeline(source, zlib.createGunzip(), () => {}) : source;
  try {
    await extractor.extract(new ByteReader(bytes));
  } catch (err) {
    if (err instanceof tar.TarError || err instanceof layers.LayerError) {
      throw new SpecialiseError(`layer ${layer.digest}: ${err.message}`);
    }
    if (err && typeof err.code === 'string' && err.code.startsWith('Z_')) {
      throw new SpecialiseError(`layer ${layer.digest}: not gzip data (${err.message})`);
    }
    throw err;
  } finally {
    bytes.destroy();
    source.destroy();
  }
}

/**
 * Reads a specialise body from `reader` (a ByteReader over the request) and lays its layers out
 * under settings.roots; resolves with the request's {handler, env, layers}. `log` gets progress
 * lines. Blobs are spooled under os.tmpdir(), one at a time, and removed.
 */
async function receive(reader, { maxLayerBytes, roots }, log) {
  let line;
  try {
    line = await reader.readLine(MAX_LINE_BYTES);
  } catch (err) {
    if (err instanceof TruncatedError) throw new SpecialiseError(err.message);
    throw err;
  }
  if (line === null) throw new SpecialiseError('the body is empty');
  const request = parseRequest(line, maxLayerBytes);
  log(`kfn runtime: specialising: handler ${request.handler}, ${request.layers.length} layer(s), ` +
    `${request.layers.reduce((sum, l) => sum + l.size, 0)} bytes\n`);
  for (const root of Object.values(roots)) fs.mkdirSync(root, { recursive: true });
  const extractor = new layers.Extractor(roots);
  const spoolDir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'kfn-specialise-'));
  try {
    for (const [i, layer] of request.layers.entries()) {
      const file = path.join(spoolDir, `layer-${i}`);
      await spool(reader, layer, file);
      await unpack(file, layer, extractor);
      await fs.promises.unlink(file);
    }
  } finally {
    await fs.promises.rm(spoolDir, { recursive: true, force: true });
  }
  if (!(await reader.atEnd())) throw new SpecialiseError('the body goes on after the last layer');
  await extractor.finish();
  log(`kfn runtime: specialising: ${extractor.files} file(s), ${extractor.bytes} bytes extracted\n`);
  return request;
}

/** The function's environment: the pod's without KFN_POOL, updated with the request's "env". */
function environment(podEnv, env) {
  const next = { ...podEnv };
  delete next.KFN_POOL;
  return Object.assign(next, env);
}

/** Makes `target` (process.env) hold exactly `next`: child processes then see it too. */
function replaceEnvironment(target, next) {
  for (const name of Object.keys(target)) {
    if (!Object.prototype.hasOwnProperty.call(next, name)) delete target[name];
  }
  for (const [name, value] of Object.entries(next)) target[name] = value;
}

/**
 * Reads and drops what is left of a refused body, at most `maxBytes` for at most `ms`, so that
 * the answer reaches a client still sending instead of a connection reset.
 */
async function drain(reader, maxBytes, ms) {
  let timer;
  const expired = new Promise((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  // A client that went away has nothing left to drain.
  const reading = reader.discard(maxBytes).catch(() => {});
  await Promise.race([reading, expired]);
  clearTimeout(timer);
}

module.exports = {
  SpecialiseError, MAX_LINE_BYTES, DEFAULT_MAX_LAYER_BYTES, MEDIA_TYPES,
  enabled, settings, parseRequest, receive, environment, replaceEnvironment, drain,
};
