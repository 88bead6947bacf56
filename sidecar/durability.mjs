// Durable commits for PGlite on a Node directory: a write is answered only once its WAL is on
// stable storage, as PostgreSQL and SQLite (synchronous FULL) promise.
//
// PGlite ships with fsync off (`-F`), and Emscripten's NODEFS has no fsync: PostgreSQL's own
// fsync() calls end as no-ops. We start PostgreSQL with fsync on and wal_sync_method = fsync,
// and give NODEFS the operations PostgreSQL's calls reach:
//
//  - fsync of a WAL segment (a commit's XLogFlush) is deferred: the segment is marked, and the
//    sidecar syncs it (fdatasync, on the helper thread: helper.mjs) before it answers the
//    request. Requests that finish while a sync runs share the next one: group commit. The
//    helper reports each sync done in shared memory, which the main thread reads between
//    requests: a reply waits for its sync, and at most for the one request running when the
//    sync ends. A request alone in flight syncs inline instead (database.mjs).
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
import { MAX_SYNC_FDS } from './helper.mjs';

const WAL_SEGMENT = /\/pg_wal\/[0-9A-F]{24}$/;
const MAX_OPEN_SEGMENTS = 8; // fds kept for syncing; a segment is 16 MB of WAL

/** Tracks WAL that PostgreSQL asked to be synced, and syncs it before replies go out. */
export class WalSync {
  #segments = new Map(); // host path -> { fd, busy }: our own fds (PostgreSQL's may close any time)
  #dirty = new Set(); // segments PostgreSQL fsynced since the last sync began
  #barrierNeeded = false; // a durable request's (or the sidecar's own) WAL is among them
  #requested = 0; // counts PostgreSQL's WAL fsyncs; a reply waits until `#synced` reaches its mark
  #synced = 0;
  #running = null; // the sync in progress: { number, segments, covering }
  #waiters = []; // { mark, then }, in the order of their marks
  #helper;
  relaxed = false; // set while a relaxed request runs
  commits = 0; // PostgreSQL's WAL fsyncs, relaxed or not: what maintenance.mjs counts

  /** `helper`: the helper.mjs thread the syncs run on. */
  constructor(helper) {
    this.#helper = helper;
  }

  /** The WAL a reply depends on: everything PostgreSQL has asked to sync so far. */
  mark() {
    return this.#requested;
  }

  /** Call `then()` once the WAL up to `mark` is on stable storage: now if it already is, else
   * from inside the sync's completion (`reap`, or a barrier). */
  afterSync(mark, then) {
    if (mark <= this.#synced) return then();
    this.#waiters.push({ mark, then });
    this.#startSync();
  }

  /** Take in a sync that has ended: what waited for it goes on. */
  reap() {
    const running = this.#running;
    if (!running) return false;
    const { done, errno } = this.#helper.synced(running.number);
    if (errno) fatal(`fdatasync of a WAL segment failed (errno ${errno})`);
    if (!done) return false;
    this.#running = null;
    for (const segment of running.segments) {
      segment.busy -= 1;
      if (segment.orphan && !segment.busy) fs.closeSync(segment.fd);
    }
    this.#settle(running.covering);
    if (this.#waiters.length) this.#startSync();
  }

  /** PostgreSQL fsynced a WAL segment: remember it; the sync happens before the reply. */
  deferred(hostPath) {
    let segment = this.#segments.get(hostPath);
    if (!segment) {
      segment = { fd: fs.openSync(hostPath, 'r'), busy: 0 }; // fdatasync syncs the file, through any fd
      this.#segments.set(hostPath, segment);
    }
    this.#dirty.add(segment);
    this.#closeIdle();
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
    if (this.#dirty.size > MAX_SYNC_FDS) {
      this.barrier(); // relaxed writes spread over many segments: rare; sync them here
      return;
    }
    const segments = [...this.#dirty];
    this.#dirty.clear();
    this.#barrierNeeded = false; // the running sync's segments are covered by `#running`
    for (const segment of segments) segment.busy += 1;
    const number = this.#helper.sync(segments.map((segment) => segment.fd));
    this.#running = { number, segments, covering: this.#requested };
    this.#helper.whenSynced(number).then(() => this.reap()); // for when nothing else wakes us
  }

  #settle(covering) {
    if (covering <= this.#synced) return;
    this.#synced = covering;
    // Waiters come in the order of their marks: resolve from the front.
    let freed = 0;
    while (freed < this.#waiters.length && this.#waiters[freed].mark <= covering) this.#waiters[freed++].then();
    if (freed) this.#waiters.splice(0, freed);
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
    walSync.forget(realPath(newDir, newName)); // a segment of that name is replaced
    return rename(oldNode, newDir, newName);
  };
}
