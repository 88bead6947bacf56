// What PostgreSQL's background workers would do, for PGlite, which runs PostgreSQL single-user
// and has none of them.
//
// Autovacuum: run states are retired and re-inserted, sessions popped and cleared, expired
// rows purged: without VACUUM their dead rows pile up, and every read wades through them.
// After enough writes, once no request has been in flight for a moment (or, under constant
// load, between requests), the sidecar asks PostgreSQL's statistics which tables need it, by
// autovacuum's own default thresholds, and runs VACUUM (ANALYZE) on each, one table per turn:
// a request that arrives meanwhile waits for at most one table.
//
// Checkpoints: single-user PostgreSQL never checkpoints by itself (max_wal_size asks the
// checkpointer, which it lacks): WAL piles up on disk, and a sidecar killed after hours of
// work replays all of it at the next open. So when quiet, once CHECKPOINT_WAL bytes of WAL
// follow the last checkpoint, the sidecar runs one; never quiet, it does past FORCED_CHECKPOINT_WAL
// (between requests: a checkpoint writes at most shared_buffers, 16 MB, and syncs). A checkpoint
// keeps old segments for reuse up to max_wal_size (server.mjs sets it to FORCED_CHECKPOINT_WAL),
// so the WAL directory stays near that size however long the sidecar runs.

const QUIET_MS = 200; // no request in flight for this long: a good moment
const WRITES_BEFORE_CHECK = 200; // committed write requests since the last check
const WRITES_BEFORE_FORCED_CHECK = 1000; // never quiet: check between requests anyway

// pg_stat_force_next_flush(): the statistics of this session's recent writes are flushed at
// the end of this statement (else at most once a second, at the end of some later one).
const FLUSH_STATS = 'SELECT pg_stat_force_next_flush()';
// autovacuum_vacuum_threshold 50 + scale factor 0.2, autovacuum_analyze_threshold 50 + 0.1.
const CHECKPOINT_WAL = 16 * 2 ** 20;
const FORCED_CHECKPOINT_WAL = 64 * 2 ** 20;
/** postgresql.conf lines: segments kept for reuse after a checkpoint (see above). */
export const WAL_SETTINGS = ['max_wal_size = 64MB', 'min_wal_size = 32MB'];
const WAL_SINCE_CHECKPOINT = 'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), (pg_control_checkpoint()).redo_lsn)';
const TABLES_TO_VACUUM = `SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables
  WHERE n_dead_tup > 50 + 0.2 * n_live_tup OR n_mod_since_analyze > 50 + 0.1 * n_live_tup
  ORDER BY n_dead_tup DESC`;

export class Maintenance {
  #database;
  #inFlight = 0;
  #checkedAt = 0; // database.writes at the last check
  #timer = null;
  #running = false;

  constructor(database) {
    this.#database = database;
  }

  started() {
    this.#inFlight += 1;
    clearTimeout(this.#timer);
    this.#timer = null;
  }

  finished() {
    this.#inFlight -= 1;
    const writes = this.#database.writes - this.#checkedAt;
    if (writes >= WRITES_BEFORE_FORCED_CHECK) {
      this.#run(false);
    } else if (this.#inFlight === 0 && writes >= WRITES_BEFORE_CHECK) {
      this.#timer = setTimeout(() => this.#inFlight === 0 && this.#run(true), QUIET_MS);
      this.#timer.unref();
    }
  }

  /** `quiet`: nobody is waiting, so a checkpoint may run at less WAL. */
  async #run(quiet) {
    if (this.#running) return;
    this.#running = true;
    this.#checkedAt = this.#database.writes;
    try {
      await this.#database.runInternal(FLUSH_STATS);
      const { results, error } = await this.#database.runInternal(TABLES_TO_VACUUM);
      if (error) throw new Error(error.message);
      for (const [table] of results[0].rows) {
        const done = await this.#database.runInternal(`VACUUM (ANALYZE) ${table}`);
        // A table dropped meanwhile is no matter; anything else is worth a line in the log.
        if (done.error && done.error.code !== '42P01') process.stderr.write(`sidecar: VACUUM ${table}: ${done.error.message}\n`);
      }
      const wal = await this.#database.runInternal(WAL_SINCE_CHECKPOINT);
      const walBytes = wal.error ? 0 : Number(wal.results[0].rows[0][0]);
      if (walBytes > (quiet ? CHECKPOINT_WAL : FORCED_CHECKPOINT_WAL)) await this.#database.runInternal('CHECKPOINT');
      await this.#database.settle();
    } catch (err) {
      process.stderr.write(`sidecar: maintenance failed: ${err?.message ?? err}\n`);
    } finally {
      this.#running = false;
    }
  }
}
