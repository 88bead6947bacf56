// The sidecar must never outlive its owner. When the owner dies its stdin closes, and the main
// thread shuts down in order, unless it cannot see that: while PGlite starts, or runs a long
// statement, the main thread is inside wasm and reads nothing. So a worker thread watches the
// owner too, and kills the process when the owner is gone and the main thread is busy with
// nothing anyone alive waits for. (Killing it is safe: an acknowledged write is in the WAL,
// and the next open replays it.)
//
// The main thread shares its state in an Int32Array: see `Watchdog` below.
import { isMainThread, Worker, workerData } from 'node:worker_threads';

const CHECK_MS = 100;
const IDLE_GRACE_CHECKS = 10; // an idle main thread normally sees the end of stdin at once

const BUSY = 0; // 0: idle; 1: starting, or running a request of the owner's; 2: another client's
const CLIENTS = 1; // processes connected to the socket

/** The main thread's side: starts the worker and tells it what the main thread is doing. */
export class Watchdog {
  #state = new Int32Array(new SharedArrayBuffer(8));

  /** `ownerPid`: the owner's pid as it said it (--owner-pid), which stays right if it died
   * before we looked; else our parent's now. */
  constructor(ownerPid = process.ppid) {
    this.busy(true); // starting
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { state: this.#state.buffer, ownerPid },
      stdout: false,
      stderr: false,
    });
    worker.unref(); // it never keeps the process alive by itself
  }

  /** The main thread is starting or serving the owner (true), another client (false), or idle (null). */
  busy(owner) {
    Atomics.store(this.#state, BUSY, owner === null ? 0 : owner ? 1 : 2);
  }

  clients(count) {
    Atomics.store(this.#state, CLIENTS, count);
  }
}

/** Whether process `pid` still exists (not necessarily our parent: a wrapper may sit between). */
function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return false; // ESRCH; EPERM would be another user's process that took the pid
  }
}

function watch({ state: buffer, ownerPid }) {
  const state = new Int32Array(buffer);
  let idleChecks = 0;
  setInterval(() => {
    if (alive(ownerPid)) return;
    const busy = Atomics.load(state, BUSY);
    const clients = Atomics.load(state, CLIENTS);
    if (busy === 1) process.kill(process.pid, 'SIGKILL'); // the owner's work, or starting: nobody waits
    idleChecks = busy === 0 && clients === 0 ? idleChecks + 1 : 0;
    if (idleChecks > IDLE_GRACE_CHECKS) process.kill(process.pid, 'SIGKILL');
  }, CHECK_MS);
}

if (!isMainThread && workerData?.ownerPid) watch(workerData);
