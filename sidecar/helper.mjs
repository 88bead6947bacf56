// The sidecar's one helper thread. The main thread may be inside wasm for as long as a
// statement runs, reading nothing; beside it, the helper
//  - syncs WAL segments when asked (durability.mjs), so the main thread runs requests meanwhile;
//  - watches the owner, and kills the process when the owner is gone and the main thread is
//    busy with nothing anyone alive waits for: while PGlite starts, or runs a long statement
//    of the owner's, the main thread cannot see its stdin end. (Killing it is safe: an
//    acknowledged write is in the WAL, and the next open replays it.)
// The two threads share an Int32Array and nothing else: the main thread reads the helper's
// progress between requests without waiting for a turn of its event loop, and no message is
// allocated per sync.
import fs from 'node:fs';
import { isMainThread, Worker, workerData } from 'node:worker_threads';

// The slots of the shared array.
const SYNCS_ASKED = 0; // syncs the main thread has asked for
const SYNCS_DONE = 1; // syncs the helper has finished
const SYNC_ERRNO = 2; // a failed sync's errno (0: none failed)
const SYNC_FD_COUNT = 3; // how many fds the next sync covers
const BUSY = 4; // 0: the main thread is idle; 1: starting, or serving the owner; 2: another client
const CLIENTS = 5; // processes connected to the socket
const SYNC_FDS = 8; // from here: the fds
export const MAX_SYNC_FDS = 8;

const CHECK_MS = 100; // how often the owner is looked for
const IDLE_GRACE_CHECKS = 10; // an idle main thread normally sees the end of stdin at once

export class Helper {
  state = new Int32Array(new SharedArrayBuffer(4 * (SYNC_FDS + MAX_SYNC_FDS)));

  /** `ownerPid`: the process the sidecar serves, as it said it (so it stays right even if
   * the owner died before we looked). */
  constructor(ownerPid) {
    Atomics.store(this.state, BUSY, 1); // starting
    const worker = new Worker(new URL(import.meta.url), { workerData: { state: this.state.buffer, ownerPid } });
    worker.unref(); // it never keeps the process alive by itself
  }

  /** The main thread is starting or serving the owner (true), another client (false), or idle (null). */
  busy(owner) {
    Atomics.store(this.state, BUSY, owner === null ? 0 : owner ? 1 : 2);
  }

  /** How many processes are connected to the socket. */
  clients(count) {
    Atomics.store(this.state, CLIENTS, count);
  }

  /** Ask for a sync of these fds (at most MAX_SYNC_FDS); the number it is known by. */
  sync(fds) {
    Atomics.store(this.state, SYNC_FD_COUNT, fds.length);
    fds.forEach((fd, index) => Atomics.store(this.state, SYNC_FDS + index, fd));
    const number = Atomics.add(this.state, SYNCS_ASKED, 1) + 1;
    Atomics.notify(this.state, SYNCS_ASKED);
    return number;
  }

  /** Whether sync `number` has finished; a failed sync's errno, if one failed. */
  synced(number) {
    return { done: Atomics.load(this.state, SYNCS_DONE) >= number, errno: Atomics.load(this.state, SYNC_ERRNO) };
  }

  /** Resolves when sync `number` finishes: wakes the main thread when it waits on nothing else. */
  whenSynced(number) {
    const done = Atomics.load(this.state, SYNCS_DONE);
    if (done >= number) return Promise.resolve();
    const wait = Atomics.waitAsync(this.state, SYNCS_DONE, done);
    return wait.async ? wait.value.then(() => this.whenSynced(number)) : this.whenSynced(number);
  }
}

/** Whether process `pid` still exists (not necessarily our parent: a wrapper may sit between). */
function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false; // ESRCH; EPERM would be another user's process that took the pid
  }
}

function runHelper({ state: buffer, ownerPid }) {
  const state = new Int32Array(buffer);
  let idleChecks = 0;
  let checkedAt = 0;
  for (;;) {
    const asked = Atomics.load(state, SYNCS_ASKED);
    if (asked > Atomics.load(state, SYNCS_DONE)) {
      const count = Atomics.load(state, SYNC_FD_COUNT);
      for (let index = 0; index < count; index++) {
        try {
          fs.fdatasyncSync(Atomics.load(state, SYNC_FDS + index));
        } catch (err) {
          Atomics.store(state, SYNC_ERRNO, Math.abs(err.errno ?? 1) || 1);
        }
      }
      Atomics.store(state, SYNCS_DONE, asked);
      Atomics.notify(state, SYNCS_DONE);
      continue;
    }
    Atomics.wait(state, SYNCS_ASKED, asked, CHECK_MS);
    if (performance.now() - checkedAt < CHECK_MS) continue;
    checkedAt = performance.now();
    if (alive(ownerPid)) continue;
    const busy = Atomics.load(state, BUSY);
    const clients = Atomics.load(state, CLIENTS);
    if (busy === 1) process.kill(process.pid, 'SIGKILL'); // the owner's work, or starting: nobody waits
    idleChecks = busy === 0 && clients === 0 ? idleChecks + 1 : 0;
    if (idleChecks > IDLE_GRACE_CHECKS) process.kill(process.pid, 'SIGKILL');
  }
}

if (!isMainThread && workerData?.ownerPid) runHelper(workerData);
