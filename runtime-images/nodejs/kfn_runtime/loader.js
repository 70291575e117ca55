'use strict';
/**
 * Loads the handler `file.export` from the task root as Lambda's Node runtime does: CommonJS via
 * require, ES modules (.mjs, or .js under "type": "module") via dynamic import. Failures become an
 * InitError carrying the error shape Lambda reports, so the server can answer with it.
 */
const fs = require('fs');
const path = require('path');
const url = require('url');
const errors = require('./errors');

class InitError extends Error {
  constructor(shape) {
    super(`${shape.errorType}: ${shape.errorMessage}`);
    this.shape = shape;
  }
}

/** 'dir/index.handler' -> ['dir/index', 'handler']; the export may be a dotted path. */
function splitHandler(spec) {
  const slash = spec.lastIndexOf('/');
  const base = spec.slice(slash + 1);
  const dot = base.indexOf('.');
  if (dot <= 0 || dot === base.length - 1) {
    throw new InitError(errors.shape(errors.MALFORMED_HANDLER_NAME, `Bad handler ${spec}`));
  }
  return [spec.slice(0, slash + 1) + base.slice(0, dot), base.slice(dot + 1)];
}

function findModule(taskRoot, modulePath) {
  const base = path.resolve(taskRoot, modulePath);
  for (const ext of ['.js', '.mjs', '.cjs']) {
    if (fs.existsSync(base + ext)) return base + ext;
  }
  if (fs.existsSync(base)) return base;
  return null;
}

async function importModule(file) {
  if (file.endsWith('.mjs')) return import(url.pathToFileURL(file).href);
  try {
    return require(file);
  } catch (err) {
    if (err && err.code === 'ERR_REQUIRE_ESM') return import(url.pathToFileURL(file).href);
    throw err;
  }
}

function describe(err) {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/**
 * Where `require` looks for packages after the task root's own node_modules: the function's
 * dependencies (/opt/nodejs/node_modules, above its layers' files there) before the layers'
 * /opt/nodejs/node<major>/node_modules, then whatever NODE_PATH already held. Lambda puts
 * node<major> first; kfn the other way round, so that the function's dependencies win over a
 * layer's copy of a package, as a Lambda function's package does. KFN_OPT_ROOT stands in for
 * /opt only in tests of the runtime outside its image. ES modules' `import` ignores NODE_PATH.
 */
function layerPaths(env = process.env) {
  const opt = env.KFN_OPT_ROOT || '/opt';
  const major = process.versions.node.split('.')[0];
  const first = [path.join(opt, 'nodejs', 'node_modules'), path.join(opt, 'nodejs', `node${major}`, 'node_modules')];
  const rest = (env.NODE_PATH || '').split(path.delimiter).filter((p) => p && !first.includes(p));
  return [...first, ...rest];
}

function setupNodePath() {
  process.env.NODE_PATH = layerPaths().join(path.delimiter);
  require('module').Module._initPaths(); // NODE_PATH is read once at start-up otherwise
}

async function loadHandler(taskRoot, spec) {
  setupNodePath();
  const [modulePath, exportPath] = splitHandler(spec);
  const file = findModule(taskRoot, modulePath);
  if (file === null) {
    throw new InitError(errors.shape(errors.IMPORT_MODULE_ERROR, `Error: Cannot find module '${modulePath}'`));
  }
  let mod;
  try {
    mod = await importModule(file);
  } catch (err) {
    if (err instanceof SyntaxError) {
      throw new InitError(errors.shape(errors.USER_CODE_SYNTAX_ERROR, describe(err), errors.fromThrown(err).stackTrace));
    }
    if (err && (err.code === 'MODULE_NOT_FOUND' || err.code === 'ERR_MODULE_NOT_FOUND')) {
      throw new InitError(errors.shape(errors.IMPORT_MODULE_ERROR, describe(err), errors.fromThrown(err).stackTrace));
    }
    throw new InitError(errors.fromThrown(err));
  }
  let handler = mod;
  for (const part of exportPath.split('.')) {
    handler = handler === null || handler === undefined ? undefined : handler[part];
  }
  if (handler === undefined && mod && mod.default && typeof mod.default === 'object') {
    // a CommonJS module imported as ESM keeps its exports under default
    handler = mod.default[exportPath];
  }
  if (handler === undefined || handler === null) {
    throw new InitError(errors.shape(errors.HANDLER_NOT_FOUND, `${modulePath}.${exportPath} is undefined or not exported`));
  }
  if (typeof handler !== 'function') {
    throw new InitError(errors.shape(errors.HANDLER_NOT_FOUND, `${modulePath}.${exportPath} is not a function`));
  }
  return handler;
}

module.exports = { InitError, splitHandler, loadHandler, layerPaths };
