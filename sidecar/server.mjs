// timestep sidecar: hosts one PGlite database and serves it over length-prefixed
// MessagePack frames on stdin/stdout (its parent) and, optionally, a unix socket
// (other processes sharing the same data directory). It runs the SQL it is sent and
// nothing else. Values travel as PostgreSQL text both ways; Python parses them.
//
//   node server.mjs --data-dir DIR [--socket PATH] [--lock-fd N]
//                                                   serve a database on disk; N is the
//                                                   inherited fd holding the directory lock
//   node server.mjs --memory [--template FILE]       serve an in-memory database
//   node server.mjs --make-template FILE             write a fresh data dir as .tgz
//   --owner-pid PID (any mode)                       the process it serves (default: its parent)
//
// When stdin closes (its parent died or let go) it exits, unless processes connected to its
// socket still use it: then it serves them and exits when the last one leaves. A helper
// thread makes sure of it while the main thread is busy (helper.mjs).
//
// The modules: serve.mjs (a client's frames), database.mjs (running requests), wire.mjs (the
// PostgreSQL protocol), isolation.mjs (one shared session, no state leaking between requests),
// durability.mjs (fsync before a reply), maintenance.mjs (vacuum, checkpoints), helper.mjs (the
// thread beside the main one: WAL syncs, and the owner's watch).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { installDurableFs, WalSync } from './durability.mjs';
import { SEARCH_PATH } from './isolation.mjs';
import { Helper } from './helper.mjs';

// First: the owner may die while PGlite is still loading.
const helper = new Helper(Number(arg('--owner-pid') ?? process.ppid));

// PostgreSQL's messages (PGlite hands them to onStdout/onStderr) go to our log, which Python
// keeps the end of for its errors; the last few also go into the error frame of a failed
// start: "Aborted()" alone does not say that pg_control is missing.
//
// A PANIC (a WAL write that failed on a full disk, say) leaves PostgreSQL unable to go on:
// PGlite does not stop, it spins. Once serving, the sidecar then exits at once, from inside
// the statement, as PostgreSQL's own server would restart: the next open recovers from the
// WAL, and no request after the PANIC is answered.
const recentLog = [];
let serving = false;
function logged(line) {
  const text = String(line).trim();
  if (!text) return;
  process.stderr.write(`postgres: ${text}\n`);
  recentLog.push(text);
  recentLog.splice(0, Math.max(0, recentLog.length - 10));
  if (serving && (/\bPANIC:/.test(text) || text.startsWith('Aborted('))) {
    process.stderr.write('sidecar: PostgreSQL cannot go on; exiting so that the next open recovers\n');
    process.exit(70);
  }
}

let encodeFrame, serve, Database, Maintenance, WAL_SETTINGS;

function arg(name) {
  const at = process.argv.indexOf(name);
  return at === -1 ? undefined : process.argv[at + 1];
}

/** Write one frame to stdout and exit: the only way to report a startup failure. */
function failStartup(message, code = 'startup') {
  const body = { type: 'error', id: 0, code, message };
  if (encodeFrame) {
    process.stdout.write(encodeFrame(body), () => process.exit(1));
  } else {
    // The MessagePack library itself is missing: hand-encode a minimal map.
    process.stdout.write(tinyErrorFrame(body), () => process.exit(1));
  }
}

function tinyErrorFrame({ type, id, code, message }) {
  // A fixmap of 4 entries, strings as str32, id as a positive fixint: valid MessagePack.
  const str = (s) => {
    const bytes = Buffer.from(s, 'utf8');
    const head = Buffer.alloc(5);
    head[0] = 0xdb;
    head.writeUInt32BE(bytes.length, 1);
    return [head, bytes];
  };
  const body = Buffer.concat([
    Buffer.from([0x84]),
    ...str('type'), ...str(type), ...str('id'), Buffer.from([id & 0x7f]),
    ...str('code'), ...str(code), ...str('message'), ...str(message),
  ]);
  const frame = Buffer.alloc(4 + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, 4);
  return frame;
}

async function loadModules() {
  try {
    ({ encodeFrame } = await import('./frames.mjs'));
    ({ serve } = await import('./serve.mjs'));
    ({ Database } = await import('./database.mjs'));
    ({ Maintenance, WAL_SETTINGS } = await import('./maintenance.mjs'));
  } catch (err) {
    failStartup(`cannot load @msgpack/msgpack (${err.message}); run \`npm ci\` in the timestep checkout`);
    return null;
  }
  try {
    return { ...(await import('@electric-sql/pglite')), ...(await import('@electric-sql/pglite/nodefs')) };
  } catch (err) {
    failStartup(`cannot find @electric-sql/pglite (${err.message}); run \`npm ci\` in the timestep checkout`);
    return null;
  }
}

function pgliteVersion() {
  try {
    const here = path.dirname(fileURLToPath(import.meta.url));
    for (let dir = here; ; dir = path.dirname(dir)) {
      const file = path.join(dir, 'node_modules', '@electric-sql', 'pglite', 'package.json');
      if (fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, 'utf8')).version;
      if (path.dirname(dir) === dir) return 'unknown';
    }
  } catch {
    return 'unknown';
  }
}

async function makeTemplate(PGlite, out) {
  const pg = new PGlite();
  await pg.waitReady;
  const dump = await pg.dumpDataDir('gzip');
  await pg.close();
  const tmp = `${out}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, new Uint8Array(await dump.arrayBuffer()));
  fs.renameSync(tmp, out);
}

/** pgvector, when its package is installed: registering it costs no measurable start-up
 * time, and `CREATE EXTENSION vector` then works (timestep.memory's vector recall). */
async function optionalExtensions() {
  try {
    const { vector } = await import('@electric-sql/pglite-pgvector');
    return { vector };
  } catch {
    return {};
  }
}

/**
 * PostgreSQL's start parameters: PGlite's own, less `-F` (fsync off) on a directory, with
 * WAL synced by fsync() (the call that reaches durability.mjs; fdatasync() is a no-op in
 * Emscripten), and pg_temp last on the search_path (isolation.mjs).
 */
function startParams(PGlite, durable) {
  const params = [];
  const defaults = PGlite.defaultStartParams;
  for (let i = 0; i < defaults.length; i++) {
    if (defaults[i] === '-F' && durable) continue;
    if (defaults[i] === '-c' && defaults[i + 1].startsWith('search_path=')) {
      i += 1;
      continue;
    }
    params.push(defaults[i]);
  }
  params.push('-c', `search_path=${SEARCH_PATH}`);
  if (durable) params.push('-c', 'wal_sync_method=fsync');
  return params;
}

/**
 * A data directory that does not exist yet (a Node process starting the embedded database on a
 * new directory, with no template to copy: js/embedded.mjs) is made by initdb in a staging
 * directory beside it, then renamed into place, so that a start killed midway leaves no
 * half-made database. We hold the directory's lock; staging copies left by a killed start go.
 */
async function initializeIfNew(PGlite, dataDir) {
  if (fs.existsSync(path.join(dataDir, 'PG_VERSION'))) return;
  if (fs.existsSync(dataDir) && fs.readdirSync(dataDir).length) return; // PGlite says what is wrong with it
  const parent = path.dirname(dataDir);
  const base = path.basename(dataDir);
  for (const name of fs.readdirSync(parent)) {
    if (name.startsWith(`${base}.`) && name.endsWith('.tmp')) fs.rmSync(path.join(parent, name), { recursive: true, force: true });
  }
  const staging = path.join(parent, `${base}.${process.pid}.tmp`);
  const fresh = new PGlite({ dataDir: staging, onStdout: logged, onStderr: logged });
  await fresh.waitReady;
  await fresh.close();
  fs.rmSync(dataDir, { recursive: true, force: true }); // empty, if there at all
  fs.renameSync(staging, dataDir);
}

async function openDatabase({ PGlite, NodeFS }) {
  const dataDir = arg('--data-dir');
  const template = arg('--template');
  // PGlite's default shared_buffers (128 MB) is most of its memory. Its files are read
  // through Node's fs, so the OS page cache sits behind a small buffer pool: 16 MB keeps
  // the sidecar under 400 MB RSS under load and opens faster (see bench/store.py).
  const options = {
    onStdout: logged,
    onStderr: logged,
    postgresqlconf: ['shared_buffers = 16MB', 'wal_buffers = 1MB', ...WAL_SETTINGS],
    extensions: await optionalExtensions(),
    startParams: startParams(PGlite, Boolean(dataDir)),
  };
  let walSync = null;
  if (dataDir) {
    await initializeIfNew(PGlite, dataDir);
    walSync = new WalSync(helper);
    const sync = walSync;
    class DurableNodeFS extends NodeFS {
      async init(pg, emscriptenOptions) {
        const init = await super.init(pg, emscriptenOptions);
        init.emscriptenOpts.preRun.push((mod) => installDurableFs(mod, sync));
        return init;
      }
    }
    options.fs = new DurableNodeFS(dataDir);
  } else if (template) {
    options.loadDataDir = new Blob([fs.readFileSync(template)]);
  }
  const pg = new PGlite(options);
  await pg.waitReady;
  return { pg, walSync };
}

async function main() {
  const pglite = await loadModules();
  if (!pglite) return;
  const wire = pglite.protocol.serialize;

  const templateOut = arg('--make-template');
  if (templateOut) {
    try {
      await makeTemplate(pglite.PGlite, templateOut);
      process.exit(0);
    } catch (err) {
      failStartup(`cannot create the PGlite template: ${err?.message ?? err}`);
    }
    return;
  }

  let pg, walSync;
  try {
    ({ pg, walSync } = await openDatabase(pglite));
  } catch (err) {
    const where = arg('--data-dir') ? ` in ${arg('--data-dir')}` : '';
    const log = recentLog.length ? `; PostgreSQL said: ${recentLog.join(' | ')}` : '';
    failStartup(`PGlite could not open the database${where}: ${err?.message ?? err}${log}`);
    return;
  }
  const database = new Database(pg, wire, { walSync, activity: (owner) => helper.busy(owner) });
  const maintenance = new Maintenance(database);

  // Lifetime: the sidecar serves its owner (stdin/stdout) and any processes connected to
  // its socket. When the owner leaves, it keeps serving those until the last one leaves,
  // then closes the database and exits. Alone, it exits as soon as its owner leaves.
  let shuttingDown = false;
  let ownerGone = false;
  let ownerDead = false;
  let server;
  const clients = new Set();
  // The last frame to the owner is `closed` with id 0: the database is closed, or handed
  // over to the processes still connected. (Node never closes fd 1, so EOF can't say it.)
  const released = () => new Promise((resolve) => process.stdout.write(encodeFrame({ type: 'closed', id: 0 }), () => resolve()));
  async function shutdown(code = 0) {
    if (shuttingDown) return;
    shuttingDown = true;
    server?.close();
    try {
      await pg.close(); // a checkpoint: its writes pass durability.mjs's barrier
      releaseLock(); // the next process may open the directory now, not when we have exited
      if (!ownerDead) await released();
    } finally {
      process.exit(code);
    }
  }
  function releaseLock() {
    const fd = arg('--lock-fd');
    if (fd !== undefined) {
      try {
        fs.closeSync(Number(fd));
      } catch {
        // already closed
      }
    }
  }
  function ownerLeft() {
    if (ownerGone) return;
    ownerGone = true;
    if (!clients.size) return shutdown(0);
    if (!ownerDead) released();
  }
  function clientLeft(conn) {
    if (!clients.delete(conn)) return;
    helper.clients(clients.size);
    conn.end(); // after what we still have to say (a refused frame's error)
    setTimeout(() => conn.destroy(), 1000).unref();
    if (ownerGone && !clients.size) shutdown(0);
  }
  /** PGlite failed under us: nothing more can be answered truthfully. Exit; the next request
   * starts a new sidecar, whose PostgreSQL recovers from the WAL. */
  function fatal(err) {
    process.stderr.write(`sidecar: ${err.message}; exiting\n`);
    setImmediate(() => process.exit(70)); // after the replies already written
  }

  const ready = {
    type: 'ready',
    id: 0,
    pid: process.pid,
    node: process.version,
    pglite: pgliteVersion(),
    durable: walSync !== null,
  };
  const serveClient = (input, output, owner, onEnd) =>
    serve({
      database,
      input,
      output,
      owner,
      onEnd,
      onClose: (out) => (out === process.stdout ? ownerLeft() : clientLeft(out)),
      onFatal: fatal,
      tracker: maintenance,
    });

  const socketPath = arg('--socket');
  if (socketPath) {
    fs.rmSync(socketPath, { force: true }); // stale: our parent holds the directory lock
    process.umask(0o077);
    server = net.createServer((conn) => {
      if (shuttingDown) return conn.destroy(); // the client retries and starts its own
      clients.add(conn);
      helper.clients(clients.size);
      conn.on('error', () => clientLeft(conn));
      conn.write(encodeFrame(ready));
      serveClient(conn, conn, false, () => clientLeft(conn));
    });
    await new Promise((resolve, reject) => server.listen(socketPath, resolve).once('error', reject));
    fs.chmodSync(socketPath, 0o600);
  }

  process.stdout.on('error', () => {
    ownerDead = true; // nobody reads our output any more
    ownerLeft();
  });
  process.stderr.on('error', () => {}); // nobody reads our log any more: keep serving
  serveClient(process.stdin, process.stdout, true, ownerLeft);
  serving = true;
  helper.busy(null);
  process.stdout.write(encodeFrame(ready));
}

process.on('unhandledRejection', (err) => {
  process.stderr.write(`sidecar: unhandled rejection: ${err?.stack ?? err}\n`);
});

main().catch((err) => failStartup(`sidecar failed: ${err?.stack ?? err}`, 'internal'));
