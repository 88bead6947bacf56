// PGlite has one PostgreSQL session, which every client of this sidecar shares. No request may
// leave that session in a state the next request sees:
//
//  - query and batch requests hold single statements (the extended protocol takes one per
//    Parse), so a statement's first keyword says what it is. Transaction control and commands
//    whose whole point is to outlast the request (LISTEN, DECLARE, PREPARE, LOAD, DISCARD) are
//    refused before anything runs; so is SET outside a batch (SET LOCAL inside one is fine).
//  - after every request, settings changed by any route (SET in a batch, set_config(), a
//    function) are reset, and temp tables dropped: RESET ALL; DISCARD TEMP, ~12 µs in wasm.
//  - exec (a script, as migrations and `timestep sql` scripts send) may hold anything, as long
//    as it ends with no transaction open: one left open, or failed, is rolled back and the
//    request fails. Everything a script may have changed is reset after it.
//  - temp tables cannot hide timestep's tables: pg_temp is last on every search_path.

/** The search_path every request starts from (PGlite's own default is `public`). */
export const SEARCH_PATH = 'public, pg_temp';
export const DEFAULT_SETUP = 'SET search_path TO DEFAULT';
// A namespace's setup: its schema, then pg_temp (timestep/store/namespace.py builds it).
const NAMESPACE_SETUP = /^SET search_path TO "[a-z0-9_-]{1,63}", pg_temp$/;

/** The setup statements a request may carry: the default path, or a namespace's. */
export const isValidSetup = (setup) => setup === DEFAULT_SETUP || NAMESPACE_SETUP.test(setup);

export const RESET_AFTER_REQUEST = 'RESET ALL; DISCARD TEMP';
// RESET ALL leaves the role alone; a SET ROLE or SET SESSION AUTHORIZATION needs this too.
// (Named: single-user PostgreSQL has no authenticated user for DEFAULT to go back to.)
export const RESET_ROLE = 'SET SESSION AUTHORIZATION postgres';
export const RESET_AFTER_SCRIPT = `${RESET_ROLE}; ${RESET_AFTER_REQUEST}; UNLISTEN *; CLOSE ALL`;

const TRANSACTION_CONTROL = new Set(['BEGIN', 'START', 'COMMIT', 'END', 'ROLLBACK', 'ABORT', 'SAVEPOINT', 'RELEASE']);
const OUTLASTS_REQUEST = new Set(['LISTEN', 'UNLISTEN', 'DECLARE', 'PREPARE', 'LOAD', 'DISCARD']);

/** The statement's first keyword, upper-cased, past whitespace, comments and parentheses. */
export function firstKeyword(sql) {
  let at = 0;
  while (at < sql.length) {
    const c = sql[at];
    if (c === '(' || /\s/.test(c)) {
      at += 1;
    } else if (sql.startsWith('--', at)) {
      const end = sql.indexOf('\n', at);
      at = end === -1 ? sql.length : end + 1;
    } else if (sql.startsWith('/*', at)) {
      let depth = 0; // PostgreSQL's block comments nest
      while (at < sql.length) {
        if (sql.startsWith('/*', at)) {
          depth += 1;
          at += 2;
        } else if (sql.startsWith('*/', at)) {
          depth -= 1;
          at += 2;
          if (depth === 0) break;
        } else {
          at += 1;
        }
      }
    } else {
      break;
    }
  }
  return (/^[A-Za-z_]+/.exec(sql.slice(at))?.[0] ?? '').toUpperCase();
}

/** Why this statement may not run as part of a query (or batch) request, or undefined. Worded
 * as timestep/store/statements.py words it, which gives PostgreSQL the same rules. */
export function refusal(sql, inBatch) {
  const keyword = firstKeyword(sql);
  if (TRANSACTION_CONTROL.has(keyword) || (keyword === 'PREPARE' && /^\s*PREPARE\s+TRANSACTION\b/i.test(sql))) {
    return (
      `${keyword} refused: a Store call is a transaction of its own. Run statements that ` +
      'belong together with execute_batch (all or nothing)'
    );
  }
  if (OUTLASTS_REQUEST.has(keyword)) {
    return (
      `${keyword} refused: it would leave state behind in a session other calls share ` +
      "(PGlite's one session, a pooled PostgreSQL connection)"
    );
  }
  if (!inBatch && (keyword === 'SET' || keyword === 'RESET')) {
    return (
      `${keyword} refused outside execute_batch: a session setting would outlast the call. Use ` +
      'SET LOCAL (or set_config(name, value, true)) inside execute_batch, for that transaction'
    );
  }
  return undefined;
}

/** A statement of this batch may switch roles (SET ROLE, SET SESSION AUTHORIZATION). */
export const maySetRole = (statements) => statements.some(([sql]) => firstKeyword(sql) === 'SET');

/** Command tags after which the sidecar's prepared statements may be gone. */
export const droppedPrepared = (tags) => tags.some((tag) => tag === 'DISCARD ALL' || tag.startsWith('DEALLOCATE'));
