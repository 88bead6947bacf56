// One turn of a conversation kept in a timestep Session, in JavaScript (tests/test_js_session.py
// alternates it with Python turns). The agent has one tool, `lookup`; the model is the fake
// server at FAKE_MODEL_URL; the database is PG_CONNECTION_URI or TIMESTEP_PGLITE_DIR.
//
//   node conversation.mjs SESSION_ID PROMPT   -> {"final", "items": the session's items after the turn}
import { Agent, OpenAIResponsesModel, setTracingDisabled, tool } from '@openai/agents';
import OpenAI from 'openai';
import { z } from 'zod';
import { Session, runAgent } from '../../js/index.mjs';

setTracingDisabled(true);
const lookup = tool({
  name: 'lookup',
  description: 'Look a word up.',
  parameters: z.object({ word: z.string() }),
  execute: async ({ word }) => `${word}: found`,
});
const client = new OpenAI({ baseURL: process.env.FAKE_MODEL_URL, apiKey: 'fake-key', maxRetries: 0 });
const agent = new Agent({ name: 'librarian', instructions: 'look words up', model: new OpenAIResponsesModel(client, 'gpt-4.1'), tools: [lookup] });
const [sessionId, prompt] = process.argv.slice(2);
const session = new Session({ sessionId });
try {
  const result = await runAgent(agent, prompt, session);
  process.stdout.write(JSON.stringify({ final: result.finalOutput, items: await session.getItems() }));
} finally {
  await session.close();
}
