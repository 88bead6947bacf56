// One item written to a Session in a PGlite directory, by a Node process on its own (the
// directory may be new, and another process may be opening it at the same moment).
//
//   node first_use.mjs PGLITE_DIR TEXT   -> {"items": the session's item count}
import { Session } from '../../js/index.mjs';

const [pgliteDir, text] = process.argv.slice(2);
const session = new Session({ sessionId: 'first-use', pgliteDir });
try {
  await session.addItems([{ role: 'user', content: text }]);
  process.stdout.write(JSON.stringify({ items: (await session.getItems()).length }));
} finally {
  await session.close();
}
