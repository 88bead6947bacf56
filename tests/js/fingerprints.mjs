// The JS SDK's own tool invocation fingerprints, for checking timestep's Python port of them
// (timestep/crosslang.py). Reads [[toolName, toolCall], ...] as JSON on stdin; writes the
// fingerprints as a JSON array. toolInvocation.mjs is internal to @openai/agents-core (not in
// its package exports), so it is imported by file.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const core = path.dirname(require.resolve('@openai/agents-core'));
const { getToolInvocationFingerprint } = await import(pathToFileURL(path.join(core, 'toolInvocation.mjs')).href);

const calls = JSON.parse(fs.readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(calls.map(([toolName, call]) => getToolInvocationFingerprint(toolName, call))));
