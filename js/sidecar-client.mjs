// A client for an already-running timestep sidecar, over its unix socket. The sidecar is
// started by a Python (or other timestep) process that holds the directory's lock; this
// module never starts one, and never opens a PGlite of its own: one PGlite per directory.
//
// The holder writes where its sidecar listens into the directory's lock file; before
// connecting, the socket and its directory must be this user's alone (timestep/store/private.py
// checks the same, and also asks the kernel who is listening, which Node cannot).
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { decode } from '@msgpack/msgpack';
import { encodeFrame, FrameReader } from '../sidecar/frames.mjs';

// The session state our requests need: the default schema (the sidecar's one PGlite session is
// shared with Python stores, which may have switched it to a namespace's schema).
const SESSION_SETUP = 'SET search_path TO DEFAULT';

/** `~` and `~/x` expanded, like Python's Path.expanduser(). */
function expandUser(p) {
  if (p === '~') return os.homedir();
  if (p.startsWith('~/')) return path.join(os.homedir(), p.slice(2));
  return p;
}

/** Absolute, with symlinks resolved as far as the path exists: Python's Path.resolve(strict=False). */
function resolvePath(p) {
  const absolute = path.resolve(p);
  try {
    return fs.realpathSync.native(absolute);
  } catch {
    const parent = path.dirname(absolute);
    if (parent === absolute) return absolute;
    return path.join(resolvePath(parent), path.basename(absolute));
  }
}

/** The PGlite directory to use when none is given: TIMESTEP_PGLITE_DIR, else the platform's user data dir. */
export function defaultPgliteDir() {
  const configured = process.env.TIMESTEP_PGLITE_DIR;
  if (configured) return expandUser(configured);
  // platformdirs.user_data_path("timestep") / "pglite"
  if (process.platform === 'darwin') {
    return path.join(os.homedir(), 'Library', 'Application Support', 'timestep', 'pglite');
  }
  const xdg = process.env.XDG_DATA_HOME ?? '';
  const base = xdg.trim() ? xdg : path.join(os.homedir(), '.local', 'share');
  return path.join(base, 'timestep', 'pglite');
}

/** The directory as DataDir resolves it (expanded, absolute, symlinks resolved). */
export function resolveDataDir(dir) {
  return resolvePath(expandUser(String(dir)));
}

/** What the holder of PGlite directory `dir`'s lock wrote in it: who it is, and a "socket <path>" line (none if unreadable). */
export function lockLines(dir) {
  try {
    return fs.readFileSync(path.join(resolveDataDir(dir), 'lock'), 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

/** The socket the sidecar of PGlite directory `dir` listens on, as its holder wrote it in the
 * directory's lock file, or undefined if nobody has said. */
export function socketPath(dir) {
  return lockLines(dir).find((l) => l.startsWith('socket '))?.slice('socket '.length);
}

/** Whether `info` (an lstat) is of a directory of this user's that no one else can write in (private.py's unsafe_because). */
export function yoursAlone(info) {
  return info.isDirectory() && info.uid === process.getuid() && !(info.mode & 0o022);
}

/** Why `socket` (or its directory) is not this user's alone, or undefined if it is. */
function unsafeSocket(socket) {
  const uid = process.getuid();
  const dir = fs.lstatSync(path.dirname(socket));
  if (!yoursAlone(dir)) {
    return `its directory ${path.dirname(socket)} is not yours alone (owner uid ${dir.uid}, mode ${(dir.mode & 0o777).toString(8)})`;
  }
  const file = fs.lstatSync(socket);
  if (!file.isSocket() || file.uid !== uid) return `${socket} is not a socket of yours (owner uid ${file.uid})`;
  return undefined;
}

/** The error for "nobody serves this directory": what to start, or what to set instead. */
function noSidecarError(dir, socket, cause) {
  const err = new Error(
    `no timestep sidecar is serving the PGlite directory ${dir} (socket ${socket}: ${cause}). ` +
      `JavaScript reaches an embedded database only through a running timestep process: start a ` +
      `timestep process on it first (e.g. \`timestep serve --pglite-path ${dir}\`, or open the store ` +
      `from Python), or set PG_CONNECTION_URI to use PostgreSQL.`,
    { cause },
  );
  err.noSidecar = true; // js/embedded.mjs starts one then
  return err;
}

/** A socket error in words: the two that mean "nobody serves here" named plainly. */
function describeSocketError(err) {
  if (err.code === 'ENOENT') return 'no such socket (ENOENT)';
  if (err.code === 'ECONNREFUSED') return 'connection refused, a stale socket (ECONNREFUSED)';
  return err.code ? `${err.message} (${err.code})` : err.message;
}

/** An error frame as a thrown Error carrying the SQLSTATE (or startup/protocol/internal) in `.code`. */
function frameError(reply) {
  const err = new Error(reply.message);
  err.code = reply.code;
  if (reply.detail != null) err.detail = reply.detail;
  if (reply.hint != null) err.hint = reply.hint;
  if (reply.index != null) err.index = reply.index;
  return err;
}

/** One connection to a sidecar: requests go out with an id, replies are matched back by it. */
export class SidecarClient {
  #socket;
  #reader = new FrameReader();
  #pending = new Map(); // id -> { resolve, reject }
  #nextId = 1; // 0 is the sidecar's own (ready, unsolicited errors)
  #failure = null; // set once the connection is gone; later requests fail with it
  #onReady;

  /** Connect to the sidecar of PGlite directory `dir` and wait for its `ready` frame. */
  static async connect(dir) {
    const resolved = resolveDataDir(dir);
    const socket = socketPath(resolved);
    if (!socket) throw noSidecarError(resolved, path.join(resolved, 'lock'), 'no process holds the directory');
    let unsafe;
    try {
      unsafe = unsafeSocket(socket);
    } catch (err) {
      throw noSidecarError(resolved, socket, describeSocketError(err));
    }
    if (unsafe) {
      throw new Error(`refusing to connect to the timestep sidecar of ${resolved}: ${unsafe}; another user could be listening there`);
    }
    const client = new SidecarClient();
    try {
      client.ready = await client.#open(socket);
    } catch (err) {
      throw noSidecarError(resolved, socket, err.message);
    }
    return client;
  }

  /** Open the socket; resolve with the ready frame, reject if the connection fails before it. */
  #open(socketFile) {
    return new Promise((resolve, reject) => {
      this.#onReady = { resolve, reject };
      this.#socket = net.createConnection(socketFile);
      this.#socket.on('data', (chunk) => this.#receive(chunk));
      this.#socket.on('error', (err) => this.#fail(new Error(`the timestep sidecar connection failed: ${describeSocketError(err)}`)));
      this.#socket.on('close', () => this.#fail(new Error('the timestep sidecar closed the connection')));
    });
  }

  /** Frames in: the first is `ready`; every later one answers the request with its id. */
  #receive(chunk) {
    let bodies;
    try {
      bodies = this.#reader.feed(chunk);
    } catch (err) {
      this.#fail(new Error(`the timestep sidecar sent a bad frame: ${err.message}`));
      this.#socket.destroy();
      return;
    }
    for (const body of bodies) {
      const reply = decode(body);
      if (this.#onReady) {
        const { resolve, reject } = this.#onReady;
        this.#onReady = null;
        if (reply.type === 'ready') resolve(reply);
        else reject(reply.type === 'error' ? frameError(reply) : new Error(`the sidecar sent ${reply.type} before ready`));
        continue;
      }
      const waiter = this.#pending.get(reply.id);
      if (!waiter) {
        // id 0: the sidecar could not read one of our frames; the stream can't be trusted now.
        if (reply.type === 'error') {
          this.#fail(new Error(`the timestep sidecar refused a frame (${reply.code}): ${reply.message}`));
          this.#socket.destroy();
        }
        continue;
      }
      this.#pending.delete(reply.id);
      if (reply.type === 'error') waiter.reject(frameError(reply));
      else waiter.resolve(reply);
    }
  }

  /** The connection is gone: fail the wait for ready and every pending request, once. */
  #fail(err) {
    if (this.#failure) return;
    this.#failure = err;
    if (this.#onReady) {
      this.#onReady.reject(err);
      this.#onReady = null;
    }
    for (const waiter of this.#pending.values()) waiter.reject(err);
    this.#pending.clear();
  }

  /** Send one request (its `id` is added here) and resolve with its reply; error frames reject. */
  request(message) {
    if (this.#failure) return Promise.reject(this.#failure);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#socket.write(encodeFrame({ ...message, id }));
    });
  }

  /** One statement; `params` are PostgreSQL text (or null), `types` their OIDs (0 = infer). */
  query(sql, params = [], types = []) {
    return this.request({ type: 'query', sql, params, types, setup: SESSION_SETUP });
  }

  /** Statements [sql, params, types] run in order in one transaction: all or nothing. */
  batch(statements) {
    return this.request({ type: 'batch', statements, setup: SESSION_SETUP });
  }

  /** Say goodbye (the sidecar keeps serving its owner), then drop the connection. */
  async close() {
    if (!this.#failure) {
      try {
        await this.request({ type: 'close' });
      } catch {
        // already gone: nothing to say goodbye to
      }
    }
    this.#fail(new Error('the timestep sidecar connection was closed'));
    this.#socket?.destroy();
  }
}
