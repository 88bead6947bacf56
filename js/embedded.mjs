// The embedded database from Node alone: join the sidecar serving a PGlite directory, or start
// one, as timestep/store/sidecar.py does (one PGlite per directory, whatever the language).
//
// The directory's `lock` file is flock()ed by whoever serves it. Node cannot flock, so the
// sidecar is started under util-linux's flock(1), which takes the same lock Python takes and
// holds it for as long as the sidecar runs. The starter writes in the lock file who holds it
// and where the sidecar listens; other processes, Python's and Node's, join it there. The
// sidecar serves its starter (through its stdin) and every process connected to its socket,
// and exits once the starter and the last of them have left.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decode } from '@msgpack/msgpack';
import { FrameReader } from '../sidecar/frames.mjs';
import { DataDirUnusable } from './errors.mjs';
import { SidecarClient, lockLines, resolveDataDir, yoursAlone } from './sidecar-client.mjs';

const SERVER = new URL('../sidecar/server.mjs', import.meta.url);
const SOCKET_PATH_LIMIT = 100; // sun_path is 104-108 bytes depending on the platform (private.py)
const HELD = 75; // flock's exit code when another process holds the lock
const START_TIMEOUT_MS = 180_000; // a new directory runs initdb first
const SHARE_TIMEOUT_MS = 30_000; // how long to wait for another starter to publish its socket

/** A connection to the sidecar of PGlite directory `dir`, started here if nobody serves it. */
export async function connectEmbedded(dir) {
  const root = resolveDataDir(dir);
  const deadline = Date.now() + SHARE_TIMEOUT_MS;
  for (;;) {
    try {
      return await SidecarClient.connect(root);
    } catch (err) {
      if (!err.noSidecar) throw err;
    }
    const started = await startSidecar(root);
    if (started === 'started') return SidecarClient.connect(root);
    if (Date.now() > deadline) {
      throw new Error(
        `${root} is locked by ${holder(root)}, whose sidecar does not answer; stop that process or choose another directory`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50)); // its holder is starting up or shutting down
  }
}

/**
 * Start the sidecar of `root` under its lock: 'started' once it serves (its socket published in
 * the lock file), or 'held' if another process holds the lock.
 */
async function startSidecar(root) {
  checkDataDir(root);
  const flock = findExecutable('flock');
  if (!flock) {
    throw new Error(
      `cannot start the embedded database in ${root} from Node: it needs flock(1) (util-linux) to take the ` +
        `directory's lock, and this machine has none. Start it with \`timestep serve --pglite-path ${root}\`, ` +
        'or set PG_CONNECTION_URI to use PostgreSQL',
    );
  }
  const lock = path.join(root, 'lock');
  fs.closeSync(fs.openSync(lock, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600));
  const socket = socketPathFor(root);
  const child = spawn(
    flock,
    ['--nonblock', '--conflict-exit-code', String(HELD), lock, process.execPath, fileURLToPath(SERVER),
      '--data-dir', path.join(root, 'pgdata'), '--socket', socket, '--owner-pid', String(process.pid)],
    { stdio: ['pipe', 'pipe', 'pipe'], detached: true }, // a group of its own: flock, and the sidecar under it
  );
  const log = [];
  child.stderr.on('data', (chunk) => {
    log.push(...String(chunk).split('\n').filter(Boolean));
    log.splice(0, Math.max(0, log.length - 20));
  });
  const ready = await new Promise((resolve, reject) => {
    const reader = new FrameReader();
    const timer = setTimeout(() => {
      process.kill(-child.pid, 'SIGKILL'); // flock waits for the sidecar, which holds the lock too: both go
      reject(new Error(`the PGlite sidecar for ${root} did not start in ${START_TIMEOUT_MS / 1000} s: ${log.slice(-5).join(' | ')}`));
    }, START_TIMEOUT_MS);
    child.stdout.on('data', (chunk) => {
      for (const body of reader.feed(chunk)) {
        const frame = decode(body);
        clearTimeout(timer);
        if (frame.type === 'ready') resolve(frame);
        else reject(new Error(`the PGlite sidecar for ${root} could not start: ${frame.message ?? frame.type}`));
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === HELD) resolve(null);
      else reject(new Error(`the PGlite sidecar for ${root} exited (${code}) before serving: ${log.slice(-5).join(' | ')}`));
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  if (!ready) return 'held';
  // Joiners find the sidecar here. The sidecar lives while this process does (its stdin), then
  // while others use it; neither it nor its pipes keep this process alive.
  fs.writeFileSync(lock, `node pid ${process.pid}, sidecar pid ${ready.pid}\nsocket ${socket}\n`);
  child.stdout.removeAllListeners('data');
  child.stdout.resume();
  for (const handle of [child, child.stdin, child.stdout, child.stderr]) handle.unref?.();
  child.stdin.on('error', () => {});
  return 'started';
}

/** Who holds the directory's lock, as the holder wrote it. */
function holder(root) {
  return lockLines(root).filter((line) => !line.startsWith('socket ')).join(' ') || 'an unknown process';
}

/**
 * Make `root` if it is new; DataDirUnusable, naming the reason and the fix, if it cannot be
 * ours (timestep/store/datadir.py checks the same, in the same words).
 */
function checkDataDir(root) {
  const unusable = (reason, fix = 'choose another directory') =>
    new DataDirUnusable(`cannot keep an embedded database in ${root}: ${reason}; ${fix}`);
  let info;
  try {
    info = fs.lstatSync(root);
  } catch (err) {
    if (err.code !== 'ENOENT') throw unusable(err.message);
    try {
      fs.mkdirSync(root, { recursive: true, mode: 0o700 });
    } catch (made) {
      throw unusable(`it cannot be created: ${made.message}`);
    }
    return;
  }
  if (!info.isDirectory()) throw unusable('it is a file, not a directory', 'give a directory (a new path is made for you)');
  if (info.uid !== process.getuid()) throw unusable(`it is owned by uid ${info.uid}, not by you (uid ${process.getuid()})`);
  if (info.mode & 0o022) {
    throw unusable(
      `it is writable by group or others (mode ${(info.mode & 0o777).toString(8)}), who could read or replace the database and its socket`,
      `run \`chmod go-w ${root}\``,
    );
  }
  if (fs.existsSync(path.join(root, 'PG_VERSION')) || fs.existsSync(path.join(root, 'global', 'pg_control'))) {
    throw unusable(
      'it is a PostgreSQL data directory itself; timestep keeps its database in pgdata/ inside the directory you give',
      'give a new or empty directory (or, for that server, PG_CONNECTION_URI)',
    );
  }
  const pgdata = path.join(root, 'pgdata');
  if (fs.existsSync(pgdata) && !fs.existsSync(path.join(pgdata, 'PG_VERSION')) && fs.readdirSync(pgdata).length) {
    throw unusable(`${pgdata} exists but is not a PostgreSQL data directory (no PG_VERSION)`, 'move it away or choose another directory');
  }
}

/** Where the sidecar of `root` listens: root/sidecar.sock if it fits, else the first per-user
 * directory in which the socket's path fits (private.py). */
function socketPathFor(root) {
  const inside = path.join(root, 'sidecar.sock');
  if (Buffer.byteLength(inside) < SOCKET_PATH_LIMIT) return inside;
  const name = `${crypto.createHash('sha256').update(inside).digest('hex').slice(0, 24)}.sock`;
  const runtime = process.env.XDG_RUNTIME_DIR;
  const bases = [
    ...(runtime && path.isAbsolute(runtime) && ownDir(runtime) ? [path.join(runtime, 'timestep')] : []),
    path.join(os.tmpdir(), `timestep-${process.getuid()}`),
  ];
  const base = bases.find((candidate) => Buffer.byteLength(path.join(candidate, name)) < SOCKET_PATH_LIMIT);
  if (!base) {
    throw new Error(
      `no place for the sidecar's socket: a unix socket's path must be under ${SOCKET_PATH_LIMIT} bytes, and ` +
        `${bases.join(' and ')} are too long; set TMPDIR to a short directory of your own`,
    );
  }
  fs.mkdirSync(base, { recursive: true, mode: 0o700 });
  if (!ownDir(base)) {
    throw new Error(`${base} is not yours alone: another user could replace the sidecar's socket there; have it removed`);
  }
  return path.join(base, name);
}

/** Whether `dir` exists as a directory of this user's alone (a missing one is not). */
function ownDir(dir) {
  try {
    return yoursAlone(fs.lstatSync(dir));
  } catch {
    return false;
  }
}

function findExecutable(name) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}
