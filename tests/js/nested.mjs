// A durable run of timestep's JS module with runs begun inside it: an input guardrail that runs
// an agent of its own beside the first model call, and an agent used as a tool. Only the outer
// run's model responses and tool outputs are its journal's steps. The model is the fake server
// at FAKE_MODEL_URL; the database is PG_CONNECTION_URI or TIMESTEP_PGLITE_DIR.
//
//   node nested.mjs RUN_ID   -> {"final"}
import { Agent, OpenAIResponsesModel, run, setTracingDisabled } from '@openai/agents';
import OpenAI from 'openai';
import { RunStateStore, runAgent } from '../../js/index.mjs';

setTracingDisabled(true);
const client = new OpenAI({ baseURL: process.env.FAKE_MODEL_URL, apiKey: 'fake-key', maxRetries: 0 });
const model = new OpenAIResponsesModel(client, 'gpt-4.1');
const checker = new Agent({ name: 'checker', instructions: 'check', model });
const inner = new Agent({ name: 'inner', instructions: 'inner', model });
const outer = new Agent({
  name: 'outer',
  instructions: 'outer',
  model,
  tools: [inner.asTool({ toolName: 'ask_inner', toolDescription: 'Ask the inner agent.' })],
  inputGuardrails: [
    {
      name: 'checked',
      execute: async () => {
        const checked = await run(checker, 'is this fine?');
        return { tripwireTriggered: false, outputInfo: checked.finalOutput };
      },
    },
  ],
});
const runStore = new RunStateStore({ agent: outer, sessionId: process.argv[2] });
try {
  const result = await runAgent(outer, 'go', null, false, { runStore });
  process.stdout.write(JSON.stringify({ final: result.finalOutput }));
} finally {
  await runStore.close();
}
