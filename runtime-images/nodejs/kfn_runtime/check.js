'use strict';
/**
 * `node check.js <code dir>`: runs `node --check` on every .js, .mjs and .cjs file of a function's
 * code and fails with each file, line and message.
 *
 * A build runs it in a step on the runtime image, so the code is checked by the very Node.js the
 * function will run on, which also decides per file whether it is an ES module: a syntax error
 * ends the build (BuildSucceeded=False, CodeCheckFailed) instead of every invocation failing with
 * Runtime.UserCodeSyntaxError. node_modules (vendored dependencies, not the user's code) is left out.
 *
 * A `node --check` process per file costs about 100 ms of CPU, so CommonJS files are first compiled
 * in this process as Node's module loader compiles them (vm.compileFunction with the module
 * wrapper's parameters), which runs none of their code; only ES modules, and files that fail
 * there, are handed to `node --check`, whose verdict and message count.
 *
 * Exit 0 when every file passes; else 1, the problems on stdout and, for the operator,
 * {"reason": "CodeCheckFailed", "error": ...} in the termination message.
 */
const childProcess = require('child_process');
const fs = require('fs');
const path = require('path');
const vm = require('vm');

const REASON = 'CodeCheckFailed';
const EXTENSIONS = ['.js', '.mjs', '.cjs'];
const SKIPPED_DIRS = new Set(['node_modules', '.git']);
/** The kubelet keeps at most 4096 bytes of a termination message. */
const MESSAGE_LIMIT = 3800;
/** Problems named in the message; the log lists them all. */
const SHOWN = 5;

/** The files to check below root, relative to it, in a stable order. */
function sourceFiles(root, dir = '') {
  const found = [];
  const entries = fs.readdirSync(path.join(root, dir), { withFileTypes: true })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    const relative = dir ? `${dir}/${entry.name}` : entry.name;
    if (entry.isDirectory()) {
      if (!SKIPPED_DIRS.has(entry.name)) found.push(...sourceFiles(root, relative));
    } else if (entry.isFile() && EXTENSIONS.includes(path.extname(entry.name))) {
      found.push(relative);
    }
  }
  return found;
}

/**
 * {file, line, message, text} from what `node --check` printed: `<path>:<line>`, the source line,
 * a caret, a blank line, then `SyntaxError: <message>` and a stack.
 */
function parse(file, stderr) {
  const lines = stderr.split('\n');
  const where = /:(\d+)$/.exec(lines[0] || '');
  const errorLine = lines.find((l) => /^[A-Za-z]*Error: /.test(l)) || lines.find((l) => l.trim()) || 'node --check failed';
  return { file, line: where ? Number(where[1]) : null, message: errorLine.trim(), text: where ? (lines[1] || '').trim() : '' };
}

/** Whether Node loads a file as an ES module: .mjs, or .js under a package.json of type module. */
function isModule(root, file) {
  if (file.endsWith('.mjs')) return true;
  if (file.endsWith('.cjs')) return false;
  for (let dir = path.dirname(path.join(root, file)); ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest)) {
      try {
        return JSON.parse(fs.readFileSync(manifest, 'utf-8')).type === 'module';
      } catch (err) {
        return false;
      }
    }
    if (path.relative(root, dir) === '' || path.dirname(dir) === dir) return false;
  }
}

const WRAPPER_PARAMETERS = ['exports', 'require', 'module', '__filename', '__dirname'];

function compiles(full) {
  try {
    vm.compileFunction(fs.readFileSync(full, 'utf-8'), WRAPPER_PARAMETERS, { filename: full });
    return true;
  } catch (err) {
    return false;
  }
}

function checkFile(root, file) {
  if (!isModule(root, file) && compiles(path.join(root, file))) return null;
  const run = childProcess.spawnSync(process.execPath, ['--check', path.join(root, file)], { encoding: 'utf-8' });
  if (run.status === 0) return null;
  return parse(file, `${run.stderr || ''}`);
}

function describe(problem) {
  const where = problem.line ? `${problem.file}, line ${problem.line}` : problem.file;
  return `${where}: ${problem.message}${problem.text ? `: ${problem.text}` : ''}`;
}

function message(problems) {
  const shown = problems.slice(0, SHOWN).map(describe).join('; ');
  const more = problems.length > SHOWN ? ` (and ${problems.length - SHOWN} more; the build's log lists them)` : '';
  return `the code does not compile with Node.js ${process.versions.node}: ${shown}${more}`;
}

function terminate(doc) {
  const file = process.env.KFN_TERMINATION_LOG || '/dev/termination-log';
  try {
    fs.writeFileSync(file, JSON.stringify(doc));
  } catch (err) {
    process.stdout.write(`code check: cannot write the termination message: ${err.message}\n`);
  }
}

function main(argv) {
  if (argv.length !== 1) {
    process.stderr.write('usage: node check.js <code dir>\n');
    return 2;
  }
  const root = argv[0];
  const files = sourceFiles(root);
  const problems = files.map((file) => checkFile(root, file)).filter((p) => p !== null);
  if (problems.length === 0) {
    process.stdout.write(`code check: ${files.length} JavaScript file(s) compile with Node.js ${process.versions.node}\n`);
    return 0;
  }
  for (const problem of problems) process.stdout.write(`code check: ${describe(problem)}\n`);
  terminate({ reason: REASON, error: message(problems).slice(-MESSAGE_LIMIT) });
  return 1;
}

module.exports = { sourceFiles, isModule, parse, message };

if (require.main === module) process.exitCode = main(process.argv.slice(2));
