// runAgent with an agent whose model is a name: where timestep's JS module routes it. The
// servers are given by the environment (OPENAI_BASE_URL, OLLAMA_*, TIMESTEP_PROVIDER_*).
//
//   node routing.mjs MODEL_NAME   -> {"final"} or {"error": name, "message"}
import { Agent, setTracingDisabled } from '@openai/agents';
import { runAgent } from '../../js/index.mjs';

setTracingDisabled(true);
try {
  const result = await runAgent(new Agent({ name: 'router', instructions: 'answer', model: process.argv[2] }), 'hi');
  process.stdout.write(JSON.stringify({ final: result.finalOutput }));
} catch (err) {
  process.stdout.write(JSON.stringify({ error: err.name, message: err.message }));
}
