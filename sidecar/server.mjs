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
//
// When stdin closes (its parent died or let go) it exits, unless processes connected to its
// socket still use it: then it serves them and exits when the last one leaves.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let encodeFrame, FrameReader, decode;

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
    ({ encodeFrame, FrameReader } = await import('./frames.mjs'));
    ({ decode } = await import('@msgpack/msgpack'));
  } catch (err) {
    failStartup(`cannot load @msgpack/msgpack (${err.message}); run \`npm ci\` in the timestep checkout`);
    return null;
  }
  try {
    return await import('@electric-sql/pglite');
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

function errorReply(id, err, index) {
  const reply = { type: 'error', id, code: err?.code || 'internal', message: String(err?.message ?? err) };
  if (err?.detail) reply.detail = err.detail;
  if (err?.hint) reply.hint = err.hint;
  if (index !== undefined) reply.index = index;
  return reply;
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

async function openDatabase(PGlite) {
  const dataDir = arg('--data-dir');
  const template = arg('--template');
  // PGlite's default shared_buffers (128 MB) is most of its memory. Its files are read
  // through Node's fs, so the OS page cache sits behind a small buffer pool: 16 MB keeps
  // the sidecar under 400 MB RSS under load and opens faster (see bench/store.py).
  const options = {
    relaxedDurability: false,
    postgresqlconf: ['shared_buffers = 16MB', 'wal_buffers = 1MB'],
    extensions: await optionalExtensions(),
  };
  if (dataDir) {
    options.dataDir = dataDir;
  } else if (template) {
    options.loadDataDir = new Blob([fs.readFileSync(template)]);
  }
  const pg = new PGlite(options);
  await pg.waitReady;
  return pg;
}

// Each request is one PostgreSQL wire-protocol message handed to PGlite in one call
// (Parse/Bind/Describe/Execute per statement, then Sync): several times faster than
// PGlite's query(), which makes a separate trip into wasm for each of those steps.
function concat(parts) {
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

class PreparedStatements {
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

  /** Forget every statement: after an error that says a prepared plan no longer fits. */
  clear() {
    for (const name of this.#entries.values()) if (name !== null) this.#toClose.push(name);
    this.#entries.clear();
    this.#parsedNow = [];
  }
}

/** An error that a fresh Parse cures: a table's columns changed under a prepared statement
 * (0A000), or the statement is gone (26000: someone ran DEALLOCATE ALL). */
const isStale = (error) =>
  error.code === '26000' || (error.code === '0A000' && /cached plan must not change result type/.test(error.message));

/**
 * A Bind message for the unnamed portal and `statement` ('' for the unnamed one): every
 * parameter PostgreSQL text, or null. Python sends each as its UTF-8 bytes, copied here as
 * they are; a string (from js/sidecar-client.mjs) is encoded with Node's native UTF-8.
 * Written here because pg-protocol's `bind` measures each string's UTF-8 length twice in a
 * JavaScript loop (~10 ns a character): 0.9 ms for a 40 KB saved run state. For a 390 KB one,
 * bytes instead of strings spare ~0.8 ms of decoding and encoding UTF-8 in the sidecar.
 */
function bindMessage(statement, params) {
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

/** Backend messages -> one result per completed statement, and the first error. */
function collect(messages) {
  const results = [];
  let current = { names: [], types: [], rows: [] };
  let error;
  let errorAt;
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
        results.push({ ...current, affected: affectedOf(message.text) });
        current = { names: [], types: [], rows: [] };
        break;
      case 'error':
        if (!error) {
          error = message;
          errorAt = results.length;
        }
        break;
      default:
    }
  }
  return { results, error, errorAt };
}

// The PGlite session's state that requests depend on, shared by every client of this sidecar:
// the last setup statement run (see runWithSetup).
const state = { setup: undefined };
const prepared = new PreparedStatements();

// After answering its last request, the sidecar reads stdin for up to POLL_MS before it
// sleeps: on a VM, waking a sleeping process costs ~40 µs, more than a short query itself,
// and a caller that awaits each reply sends its next request within that. (Python polls for
// its reply the same way: timestep/store/sidecar.py.) After a poll that found nothing, the
// next POLL_BACKOFF answers sleep at once: an idle or slow caller costs a fifth of a poll per
// request. Only with a second core, for the caller to run on meanwhile.
const POLL_MS = os.availableParallelism() >= 2 ? 0.15 : 0;
const POLL_BACKOFF = 4;

/** Reads `input`'s fd without blocking for up to POLL_MS; hands what comes to `onData`. */
class InputPoller {
  #fd;
  #input;
  #buffer = Buffer.allocUnsafe(64 * 1024);
  #sleepNext = 0;

  constructor(input) {
    this.#input = input;
    this.#fd = input.fd;
  }

  poll(onData) {
    // Data the stream has already taken is delivered by the stream, in order.
    if (!POLL_MS || this.#input.readableLength || this.#input.destroyed) return;
    if (this.#sleepNext) {
      this.#sleepNext -= 1;
      return;
    }
    const deadline = performance.now() + POLL_MS;
    while (performance.now() < deadline) {
      let n;
      try {
        n = fs.readSync(this.#fd, this.#buffer); // the fd is non-blocking: EAGAIN when empty
      } catch (err) {
        if (err.code === 'EAGAIN') continue;
        return; // the stream reports real errors itself
      }
      if (n > 0) onData(Buffer.from(this.#buffer.subarray(0, n)));
      return; // n === 0 is the end of input: the stream sees it too
    }
    this.#sleepNext = POLL_BACKOFF;
  }
}

/** Serve frames from `input`, replying on `output`, until `input` ends. */
function serve(pg, wire, options, input, output, onEnd) {
  const reader = new FrameReader();
  const send = (message) => {
    if (!output.destroyed) output.write(encodeFrame(message));
  };
  // Only a pipe: its fd is non-blocking, so a poll never waits on it.
  const poller = input === process.stdin && fs.fstatSync(input.fd).isFIFO() ? new InputPoller(input) : undefined;
  let inFlight = 0;
  const answered = () => {
    inFlight -= 1;
    if (inFlight === 0) poller?.poll(onData);
  };
  // One request at a time into PGlite (execProtocol is not re-entrant), in arrival order.
  // syncToFs: false skips a no-op: on a Node directory (and in memory) PostgreSQL's writes
  // go straight to the files; PGlite's sync step only matters for browser filesystems.
  // Session setup: a request may carry one statement that puts PGlite's single session in
  // the state it needs (timestep's namespaces: the search_path). The session is shared by
  // every client, so it is run, ahead of the request, whenever it differs from the last one
  // run; decided under the lock that orders requests. `skip` counts the results it adds.
  // `build(statement)` makes the request's messages, each statement's from
  // `statement(sql, params, types)`: under the lock too, as prepared statements are the
  // session's. A query or batch that failed only because a prepared statement went stale
  // failed whole (a batch rolls back), so it runs once more, with every statement parsed anew.
  const runWithSetup = (request, build) =>
    pg.runExclusive(async () => {
      for (let attempt = 0; ; attempt++) {
        const skip = request.setup && request.setup !== state.setup ? 1 : 0;
        const statement = (sql, params, types) => prepared.messages(wire, request.setup, sql, params, types);
        let collected;
        try {
          const all = [...(skip ? [wire.query(request.setup)] : []), ...build(statement), ...prepared.closing(wire)];
          const { messages } = await pg.execProtocol(concat(all), { throwOnError: false, syncToFs: false });
          collected = collect(messages);
        } catch (err) {
          prepared.failed();
          throw err;
        }
        if (skip && !(collected.error && collected.errorAt === 0)) state.setup = request.setup; // it ran outside any transaction: it sticks
        if (!collected.error) {
          prepared.succeeded();
        } else if (attempt === 0 && request.type !== 'exec' && isStale(collected.error)) {
          prepared.clear();
          continue;
        } else {
          prepared.failed();
        }
        collected.results = collected.results.slice(skip);
        if (collected.errorAt !== undefined) collected.errorAt -= skip;
        return collected;
      }
    });
  const resultReply = (id, result) => ({ type: 'result', id, names: result.names, types: result.types, rows: result.rows, affected: result.affected });

  async function handle(request) {
    const { id } = request;
    try {
      switch (request.type) {
        case 'query': {
          const { results, error } = await runWithSetup(request, (statement) => [...statement(request.sql, request.params, request.types), wire.sync()]);
          return send(error ? errorReply(id, error) : resultReply(id, results[0]));
        }
        case 'exec': {
          const { results, error } = await runWithSetup(request, () => [wire.query(request.sql)]);
          if (error) return send(errorReply(id, error));
          const last = results.at(-1) ?? { names: [], types: [], rows: [], affected: 0 };
          return send({ ...resultReply(id, last), affected: results.reduce((n, r) => n + r.affected, 0) });
        }
        case 'batch': {
          // BEGIN; the statements; Sync; COMMIT. After a failure PostgreSQL skips to the
          // Sync, and the COMMIT of the failed transaction rolls it back.
          const build = (statement) => [
            wire.query('BEGIN'),
            ...request.statements.flatMap(([sql, params, types]) => statement(sql, params, types)),
            wire.sync(),
            wire.query('COMMIT'),
          ];
          const { results, error, errorAt } = await runWithSetup(request, build);
          const count = request.statements.length;
          if (error) {
            const index = errorAt - 1; // results[0] is BEGIN's
            return send(errorReply(id, error, index < count ? index : undefined));
          }
          return send({ type: 'batch_result', id, affected: results.slice(1, count + 1).map((r) => r.affected) });
        }
        case 'close':
          send({ type: 'closed', id });
          return options.onClose(output);
        default:
          return send(errorReply(id, { code: 'protocol', message: `unknown request type ${request.type}` }));
      }
    } catch (err) {
      send(errorReply(id, err));
    }
  }

  function onData(chunk) {
    let bodies;
    try {
      bodies = reader.feed(chunk);
    } catch (err) {
      send(errorReply(0, { code: 'protocol', message: err.message }));
      input.destroy();
      return;
    }
    for (const body of bodies) {
      let request;
      try {
        request = decode(body);
      } catch (err) {
        send(errorReply(0, { code: 'protocol', message: `undecodable frame: ${err.message}` }));
        continue;
      }
      inFlight += 1;
      handle(request).finally(answered);
    }
  }
  input.on('data', onData);
  input.on('end', onEnd);
  input.on('error', onEnd);
}

async function main() {
  const pglite = await loadModules();
  if (!pglite) return;
  const { PGlite, protocol } = pglite;
  const wire = protocol.serialize;

  const templateOut = arg('--make-template');
  if (templateOut) {
    try {
      await makeTemplate(PGlite, templateOut);
      process.exit(0);
    } catch (err) {
      failStartup(`cannot create the PGlite template: ${err?.message ?? err}`);
    }
    return;
  }

  let pg;
  try {
    pg = await openDatabase(PGlite);
  } catch (err) {
    const where = arg('--data-dir') ? ` in ${arg('--data-dir')}` : '';
    failStartup(`PGlite could not open the database${where}: ${err?.message ?? err}`);
    return;
  }

  // Lifetime: the sidecar serves its owner (stdin/stdout) and any processes connected to
  // its socket. When the owner leaves, it keeps serving those until the last one leaves,
  // then closes the database and exits. Alone, it exits as soon as its owner leaves.
  let shuttingDown = false;
  let ownerGone = false;
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
      await pg.close();
      releaseLock(); // the next process may open the directory now, not when we have exited
      if (!ownerDead) await released();
    } finally {
      process.exit(code);
    }
  }
  let ownerDead = false;
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
    clients.delete(conn);
    conn.destroy();
    if (ownerGone && !clients.size) shutdown(0);
  }

  const ready = { type: 'ready', id: 0, pid: process.pid, node: process.version, pglite: pgliteVersion() };
  const options = { onClose: (output) => (output === process.stdout ? ownerLeft() : output.end()) };

  const socketPath = arg('--socket');
  if (socketPath) {
    fs.rmSync(socketPath, { force: true }); // stale: our parent holds the directory lock
    process.umask(0o077);
    server = net.createServer((conn) => {
      if (shuttingDown) return conn.destroy(); // the client retries and starts its own
      clients.add(conn);
      conn.write(encodeFrame(ready));
      serve(pg, wire, options, conn, conn, () => clientLeft(conn));
    });
    await new Promise((resolve, reject) => server.listen(socketPath, resolve).once('error', reject));
    fs.chmodSync(socketPath, 0o600);
  }

  process.stdout.on('error', () => {
    ownerDead = true; // nobody reads our output any more
    ownerLeft();
  });
  process.stderr.on('error', () => {}); // nobody reads our log any more: keep serving
  serve(pg, wire, options, process.stdin, process.stdout, ownerLeft);
  process.stdout.write(encodeFrame(ready));
}

process.on('unhandledRejection', (err) => {
  process.stderr.write(`sidecar: unhandled rejection: ${err?.stack ?? err}\n`);
});

main().catch((err) => failStartup(`sidecar failed: ${err?.stack ?? err}`, 'internal'));
