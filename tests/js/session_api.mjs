// The Session interface of timestep's JS module, call by call, on one session: what each call
// returns. The database is PG_CONNECTION_URI or TIMESTEP_PGLITE_DIR.
//
//   node session_api.mjs SESSION_ID   -> {"id", "latest", "popped", "left", "cleared", "emptyPop", "badTtl"}
import { Session } from '../../js/index.mjs';

const sessionId = process.argv[2];
const session = new Session({ sessionId, ttl: 3600 });
const out = {};
try {
  out.id = await session.getSessionId();
  await session.addItems([
    { role: 'user', content: 'a' },
    { type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'b' }] },
  ]);
  await session.addItems([{ role: 'user', content: 'c' }]);
  out.latest = await session.getItems(2);
  out.none = await session.getItems(0);
  out.popped = await session.popItem();
  out.left = await session.getItems();
  await session.clearSession();
  out.cleared = await session.getItems();
  out.emptyPop = (await session.popItem()) ?? null;
  try {
    new Session({ sessionId, ttl: -1 });
  } catch (err) {
    out.badTtl = `${err.name}: ${err.message}`;
  }
  await session.addItems([{ role: 'user', content: 'again' }]);
  process.stdout.write(JSON.stringify(out));
} finally {
  await session.close();
}
