// The floor for bench/store.py: the same operations on PGlite in-process in Node, no sidecar.
// Prints one JSON object: per-operation times in milliseconds.
import { PGlite, protocol } from '@electric-sql/pglite';

const [dataDir, warmup, rounds] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
// The sidecar's settings (sidecar/server.mjs), so the comparison is like for like.
const pg = new PGlite(dataDir, { postgresqlconf: ['shared_buffers = 16MB', 'wal_buffers = 1MB'] });
await pg.waitReady;

async function perOp(fn, n) {
  for (let i = 0; i < warmup; i++) await fn(i);
  const times = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn(i);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return { median: times[Math.floor(n / 2)], mean: times.reduce((a, b) => a + b, 0) / n };
}

await pg.exec('DROP TABLE IF EXISTS floor_rows; CREATE TABLE floor_rows (id bigint, body text)');
const select1 = await perOp(() => pg.query('SELECT 1', [], { rowMode: 'array' }), rounds);
// What the sidecar itself does per request: one pipelined wire-protocol message.
const wire = protocol.serialize;
const parts = [wire.parse({ text: 'SELECT 1', types: [] }), wire.bind({ values: [] }), wire.describe({ type: 'P' }), wire.execute({}), wire.sync()];
const message = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
parts.reduce((at, p) => (message.set(p, at), at + p.length), 0);
const select1Raw = await perOp(() => pg.execProtocol(message), rounds);
const insert = await perOp((i) => pg.query('INSERT INTO floor_rows VALUES ($1, $2)', [String(i), 'row']), rounds);
let t = performance.now();
await pg.transaction(async (tx) => {
  for (let i = 0; i < 10000; i++) await tx.query('INSERT INTO floor_rows VALUES ($1, $2)', [String(i), 'row']);
});
const batch10k = performance.now() - t;
await pg.exec('DROP TABLE floor_rows');
await pg.close();
console.log(JSON.stringify({ select1, select1Raw, insert, batch10k }));
