// PostgreSQL wire-protocol messages for the sidecar's requests, and what comes back.
//
// Each request is one run of frontend messages handed to PGlite in one call (Parse/Bind/
// Describe/Execute per statement, then Sync): several times faster than PGlite's query(),
// which makes a separate trip into wasm for each of those steps.

/** Byte arrays joined into one. */
export function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

// PostgreSQL parses, analyses and plans an unnamed statement anew each time it runs; in
// PGlite's wasm that is most of a short statement's time (a one-row lookup by index: 0.21 ms
// unnamed, 0.08 ms prepared). So a statement seen a second time is prepared under a name and
// bound by name from then on, as psycopg does on PostgreSQL after five. Names belong to the
// PGlite session, which every client of this sidecar shares: one cache serves them all, and
// it is only used under the lock that orders requests. PostgreSQL re-plans a prepared
// statement itself when a table it reads changes.
const MAX_PREPARED = 256;

export class PreparedStatements {
  #entries = new Map(); // key -> statement name, or null when seen once; oldest use first
  #toClose = []; // names PostgreSQL may still hold, deallocated at the end of the next request
  #count = 0;
  #parsedNow = []; // names first parsed by the request being built

  /** Parse (when the statement is new to the cache or to PostgreSQL), Bind, Describe, Execute. */
  messages(wire, setup, sql, params, types) {
    // One plan per namespace (a namespace's setup is its search_path).
    const key = `${setup ?? ''}\0${types.join(',')}\0${sql}`;
    const seen = this.#entries.has(key);
    let name = this.#entries.get(key) ?? null;
    this.#entries.delete(key);
    const parts = [];
    if (seen && name === null) {
      name = `timestep_${++this.#count}`;
      this.#parsedNow.push([key, name]);
      parts.push(wire.parse({ name, text: sql, types }));
    } else if (name === null) {
      parts.push(wire.parse({ name: '', text: sql, types }));
    }
    this.#entries.set(key, name);
    if (this.#entries.size > MAX_PREPARED) {
      const [oldest, oldName] = this.#entries.entries().next().value;
      this.#entries.delete(oldest);
      if (oldName !== null) this.#toClose.push(oldName);
    }
    parts.push(bindMessage(name ?? '', params), wire.describe({ type: 'P' }), wire.execute({}));
    return parts;
  }

  /** Messages that end a request: deallocate evicted statements (Close of a name PostgreSQL
   * does not hold is no error), then Sync. Outside the request's own transaction and Sync,
   * so a failed request does not skip them. */
  closing(wire) {
    const names = this.#toClose;
    this.#toClose = [];
    return names.length ? [...names.map((name) => wire.close({ type: 'S', name })), wire.sync()] : [];
  }

  /** The request just run failed: statements it parsed may not exist; forget them. */
  failed() {
    for (const [key, name] of this.#parsedNow) {
      if (this.#entries.get(key) === name) this.#entries.delete(key);
      this.#toClose.push(name);
    }
    this.#parsedNow = [];
  }

  succeeded() {
    this.#parsedNow = [];
  }

  /** Forget every statement: after an error that says a prepared plan no longer fits, or
   * after a client's DISCARD ALL or DEALLOCATE. */
  clear() {
    for (const name of this.#entries.values()) if (name !== null) this.#toClose.push(name);
    this.#entries.clear();
    this.#parsedNow = [];
  }
}

/** An error that a fresh Parse cures: a table's columns changed under a prepared statement
 * (0A000), or the statement is gone (26000: someone ran DEALLOCATE ALL). */
export const isStale = (error) =>
  error.code === '26000' || (error.code === '0A000' && /cached plan must not change result type/.test(error.message));

/**
 * A Bind message for the unnamed portal and `statement` ('' for the unnamed one): every
 * parameter PostgreSQL text, or null. Python sends each as its UTF-8 bytes, copied here as
 * they are; a string (from js/sidecar-client.mjs) is encoded with Node's native UTF-8.
 * Written here because pg-protocol's `bind` measures each string's UTF-8 length twice in a
 * JavaScript loop (~10 ns a character): 0.9 ms for a 40 KB saved run state. For a 390 KB one,
 * bytes instead of strings spare ~0.8 ms of decoding and encoding UTF-8 in the sidecar.
 */
export function bindMessage(statement, params) {
  const lengths = params.map((value) =>
    value === null || value === undefined ? -1 : typeof value === 'string' ? Buffer.byteLength(value) : value.length,
  );
  const nameLength = Buffer.byteLength(statement); // ASCII: ours, or '' for the unnamed statement
  const size = 4 + 1 + nameLength + 1 + 2 + 2 + lengths.reduce((n, length) => n + 4 + Math.max(length, 0), 0) + 2;
  const message = Buffer.allocUnsafe(1 + size);
  let at = message.writeUInt8(0x42, 0); // 'B'
  at = message.writeInt32BE(size, at);
  at = message.writeUInt8(0, at); // the unnamed portal
  at += message.write(statement, at, 'latin1');
  at = message.writeUInt8(0, at); // the statement's name ends
  at = message.writeInt16BE(0, at); // no parameter format codes: all text
  at = message.writeInt16BE(params.length, at);
  params.forEach((value, index) => {
    at = message.writeInt32BE(lengths[index], at); // -1: NULL
    if (lengths[index] <= 0) return;
    if (typeof value === 'string') {
      at += message.write(value, at, 'utf8');
    } else {
      message.set(value, at);
      at += lengths[index];
    }
  });
  message.writeInt16BE(0, at); // no result format codes: all text
  return message;
}

/** Rows affected, as libpq's PQcmdTuples counts them from the command tag ("INSERT 0 3"). */
function affectedOf(tag) {
  const match = /^(?:INSERT \d+|UPDATE|DELETE|SELECT|MERGE|COPY|FETCH|MOVE) (\d+)$/.exec(tag);
  return match ? Number(match[1]) : 0;
}

/**
 * Backend messages, split where each ReadyForQuery ends a part (a Sync, or a simple query):
 * per part, one result per completed statement (with its command tag), the part's first error
 * and how many statements completed before it, and the transaction status the part ended in
 * ('I' idle, 'T' in a transaction, 'E' in a failed one).
 */
export function collect(messages) {
  const parts = [];
  let part = { results: [], error: undefined, errorAt: undefined, status: 'I' };
  let current = { names: [], types: [], rows: [] };
  for (const message of messages) {
    switch (message.name) {
      case 'rowDescription':
        current.names = message.fields.map((f) => f.name);
        current.types = message.fields.map((f) => f.dataTypeID);
        break;
      case 'dataRow':
        current.rows.push(message.fields);
        break;
      case 'commandComplete':
      case 'emptyQuery': // an empty statement: no rows, nothing affected, as on PostgreSQL
        part.results.push({ ...current, tag: message.text ?? '', affected: affectedOf(message.text ?? '') });
        current = { names: [], types: [], rows: [] };
        break;
      case 'error':
        if (!part.error) {
          part.error = message;
          part.errorAt = part.results.length;
        }
        break;
      case 'readyForQuery':
        part.status = message.status;
        parts.push(part);
        part = { results: [], error: undefined, errorAt: undefined, status: 'I' };
        current = { names: [], types: [], rows: [] };
        break;
      default:
    }
  }
  return parts;
}
