// Durable commits for PGlite on a Node directory: a write is answered only once its WAL is on
// stable storage, as PostgreSQL and SQLite (synchronous FULL) promise.
//
// PGlite ships with fsync off (`-F`), and Emscripten's NODEFS has no fsync: PostgreSQL's own
// fsync() calls end as no-ops. We start PostgreSQL with fsync on and wal_sync_method = fsync,
// and give NODEFS the operations PostgreSQL's calls reach:
//
//  - fsync of a WAL segment (a commit's XLogFlush) is deferred: the segment is marked, and the
//    sidecar syncs it (fdatasync, on a thread of its own) before it answers the request.
//    Requests that finish while a sync runs share the next one: group commit. The sync thread
//    reports each sync done in shared memory, which the main thread reads between requests: a
//    reply waits for its sync, and at most for the one request running when the sync ends.
//  - Anything else that touches a file (a data page written, a file truncated, renamed or
//    removed, pg_control or a data file fsynced at a checkpoint) first syncs the WAL written
//    before it, at once, then goes ahead. PostgreSQL's rule is "WAL before data"; deferring
//    the WAL's sync must not let a data page reach the disk ahead of the WAL that covers it.
//  - fsync of anything else is a real fsync.
//
// A relaxed request (durability="relaxed") is answered without a sync, and its commits do not
// trip the barrier: a killed process loses none of its writes (they are in the files), an OS
// crash may lose the last of them, or, as with SQLite's synchronous=OFF, damage the database.
// Its WAL is synced with the next durable request's, which may have read what it wrote.
//
// A sync that fails (EIO, ENOSPC) leaves it unknown what reached the disk. As PostgreSQL does
// (it PANICs), the sidecar then exits: the next open replays the WAL that is on disk, and no
// request whose WAL was not synced was ever answered.
import fs from 'node:fs';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

const WAL_SEGMENT = /\/pg_wal\/[0-9A-F]{24}$/;
const MAX_OPEN_SEGMENTS = 8; // fds kept for syncing; a segment is 16 MB of WAL

/** The thread that runs fdatasync calls, so the main thread can go on running requests. */
class SyncThread {
  #state = new Int32Array(new SharedArrayBuffer(8)); // [0]: syncs done; [1]: a failure's errno
  #worker;
  #started = 0;

  /** `onDone()`: a sync ended (a message, for when the main thread is waiting on nothing else). */
  constructor(onDone) {
    this.#worker = new Worker(new URL(import.meta.url), { workerData: { syncState: this.#state.buffer } });
    this.#worker.on('message', onDone);
    this.#worker.unref();
  }

  /** Sync these fds; the number the sync is known by. */
  start(fds) {
    this.#worker.postMessage(fds);
    this.#started += 1;
    return this.#started;
  }

  /** Whether sync number `n` has ended; throws if one failed. */
  ended(n) {
    const failed = Atomics.load(this.#state, 1);
    if (failed) fatal(`fdatasync of a WAL segment failed (errno ${failed})`);
    return Atomics.load(this.#state, 0) >= n;
  }
}

/** Tracks WAL that PostgreSQL asked to be synced, and syncs it before replies go out. */
export class WalSync {
  #segments = new Map(); // host path -> { fd, busy }: our own fds (PostgreSQL's may close any time)
  #dirty = new Set(); // segments PostgreSQL fsynced since the last sync began
  #barrierNeeded = false; // a durable request's (or the sidecar's own) WAL is among them
  #requested = 0; // counts PostgreSQL's WAL fsyncs; a reply waits until `#synced` reaches its mark
  #synced = 0;
  #running = null; // the sync in progress: { number, segments, covering }
  #waiters = []; // { mark, resolve }
  #thread = new SyncThread(() => this.reap());
  relaxed = false; // set while a relaxed request runs
  commits = 0; // PostgreSQL's WAL fsyncs, relaxed or not: what maintenance.mjs counts

  /** The WAL a reply depends on: everything PostgreSQL has asked to sync so far. */
  mark() {
    return this.#requested;
  }

  /** Resolves once the WAL up to `mark` is on stable storage (at once if it already is). */
  durable(mark) {
    if (mark <= this.#synced) return undefined;
    const waiting = new Promise((resolve) => this.#waiters.push({ mark, resolve }));
    this.#startSync();
    return waiting;
  }

  /** Take in a sync that has ended: the replies it covers may go. True if it freed some. */
  reap() {
    const running = this.#running;
    if (!running || !this.#thread.ended(running.number)) return false;
    this.#running = null;
    for (const segment of running.segments) {
      segment.busy -= 1;
      if (segment.orphan && !segment.busy) fs.closeSync(segment.fd);
    }
    const waiting = this.#waiters.length;
    this.#settle(running.covering);
    const freed = this.#waiters.length < waiting;
    if (this.#waiters.length) this.#startSync();
    return freed;
  }

  /** PostgreSQL fsynced a WAL segment: remember it; the sync happens before the reply. */
  deferred(hostPath) {
    let segment = this.#segments.get(hostPath);
    if (!segment) {
      segment = { fd: fs.openSync(hostPath, 'r'), busy: 0 }; // fdatasync syncs the file, through any fd
      this.#segments.set(hostPath, segment);
      this.#closeIdle();
    }
    this.#dirty.add(segment);
    this.commits += 1;
    if (this.relaxed) return;
    this.#requested += 1;
    this.#barrierNeeded = true;
  }

  /** Something other than WAL is about to change on disk: the WAL before it must be there first. */
  barrier() {
    if (!this.#barrierNeeded && !this.#running) return;
    const segments = new Set([...this.#dirty, ...(this.#running?.segments ?? [])]);
    this.#dirty.clear();
    this.#barrierNeeded = false;
    for (const segment of segments) {
      try {
        fs.fdatasyncSync(segment.fd);
      } catch (err) {
        fatal(`fdatasync of a WAL segment failed (${err.code ?? err.message})`);
      }
    }
    this.#settle(this.#requested);
  }

  /** A WAL segment is renamed or removed: sync first (barrier), and stop tracking it by that name. */
  forget(hostPath) {
    this.barrier();
    const segment = this.#segments.get(hostPath);
    if (!segment) return;
    this.#segments.delete(hostPath);
    if (!segment.busy) fs.closeSync(segment.fd);
    else segment.orphan = true; // closed when its sync has ended
  }

  #startSync() {
    if (this.#running || !this.#dirty.size) return;
    const segments = [...this.#dirty];
    this.#dirty.clear();
    this.#barrierNeeded = false; // the running sync's segments are covered by `#running`
    for (const segment of segments) segment.busy += 1;
    const number = this.#thread.start(segments.map((segment) => segment.fd));
    this.#running = { number, segments, covering: this.#requested };
  }

  #settle(covering) {
    if (covering <= this.#synced) return;
    this.#synced = covering;
    const still = [];
    for (const waiter of this.#waiters) {
      if (waiter.mark <= this.#synced) waiter.resolve();
      else still.push(waiter);
    }
    this.#waiters = still;
  }

  #closeIdle() {
    if (this.#segments.size <= MAX_OPEN_SEGMENTS) return;
    for (const [hostPath, segment] of this.#segments) {
      if (this.#segments.size <= MAX_OPEN_SEGMENTS) return;
      if (segment.busy || this.#dirty.has(segment)) continue;
      this.#segments.delete(hostPath);
      fs.closeSync(segment.fd);
    }
  }
}

/** After a failed sync nothing can be answered truthfully: exit, and let recovery decide. */
function fatal(reason) {
  process.stderr.write(`sidecar: ${reason}; exiting, as PostgreSQL does, so that the next open recovers from what reached the disk\n`);
  process.exit(70);
}

/**
 * Give Emscripten's NODEFS (module `mod`, before PostgreSQL starts) the fsync PostgreSQL's calls
 * reach, with WAL syncs deferred to `walSync` and every other change to the disk behind its barrier.
 */
export function installDurableFs(mod, walSync) {
  const { NODEFS } = mod;
  const streams = NODEFS.stream_ops;
  const nodes = NODEFS.node_ops;
  const isWal = (stream) => (stream.timestepWal ??= WAL_SEGMENT.test(stream.path ?? ''));
  const realPath = (parent, name) => `${NODEFS.realPath(parent)}/${name}`;

  streams.fsync = (stream) => {
    if (isWal(stream)) {
      try {
        walSync.deferred(NODEFS.realPath(stream.node));
      } catch {
        // No fd to sync it later by (EMFILE, say): sync it now, through PostgreSQL's own.
        walSync.barrier();
        NODEFS.tryFSOperation(() => fs.fdatasyncSync(stream.nfd));
      }
      return 0;
    }
    walSync.barrier();
    NODEFS.tryFSOperation(() => fs.fsyncSync(stream.nfd));
    return 0;
  };
  const write = streams.write;
  streams.write = (stream, ...args) => {
    if (!isWal(stream)) walSync.barrier();
    return write(stream, ...args);
  };
  for (const [ops, name] of [[streams, 'setattr'], [nodes, 'setattr'], [nodes, 'rmdir']]) {
    const original = ops[name];
    ops[name] = (...args) => {
      walSync.barrier();
      return original(...args);
    };
  }
  const unlink = nodes.unlink;
  nodes.unlink = (parent, name) => {
    walSync.forget(realPath(parent, name));
    return unlink(parent, name);
  };
  const rename = nodes.rename;
  nodes.rename = (oldNode, newDir, newName) => {
    walSync.forget(NODEFS.realPath(oldNode));
    return rename(oldNode, newDir, newName);
  };
}

// The sync thread: fdatasync each batch of fds it is sent, then count it done.
if (!isMainThread && workerData?.syncState) {
  const state = new Int32Array(workerData.syncState);
  parentPort.on('message', (fds) => {
    for (const fd of fds) {
      try {
        fs.fdatasyncSync(fd);
      } catch (err) {
        Atomics.store(state, 1, Math.abs(err.errno ?? 1) || 1);
      }
    }
    Atomics.add(state, 0, 1);
    parentPort.postMessage(0);
  });
}
