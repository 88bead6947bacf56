// A Node process that starts the embedded database itself (no Python has it open), writes one
// item to a Session, says "ready", and holds the database until a line arrives on stdin.
//
//   node embedded_holder.mjs PGLITE_DIR SESSION_ID   -> "ready <sidecar holder line>" ... then exits
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { Session } from '../../js/index.mjs';

const [pgliteDir, sessionId] = process.argv.slice(2);
const session = new Session({ sessionId, pgliteDir });
await session.addItems([{ role: 'user', content: 'from node' }]);
const holder = fs.readFileSync(path.join(pgliteDir, 'lock'), 'utf8').split('\n')[0];
process.stdout.write(`ready ${holder}\n`);
await new Promise((resolve) => readline.createInterface({ input: process.stdin }).once('line', resolve));
await session.close();
process.exit(0);
