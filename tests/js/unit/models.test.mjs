// Model routing by prefix (js/models.mjs), without a network: which provider and model name a
// name resolves to, and the errors: npm test
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OpenAIChatCompletionsModel, OpenAIResponsesModel } from '@openai/agents';
import { ModelRoutingError, MultiModelProvider, MultiModelProviderMap, OllamaProvider } from '../../../js/index.mjs';

test('TIMESTEP_PROVIDER_<NAME>_* become prefixes: lower-cased, _ as -', () => {
  const map = MultiModelProviderMap.fromEnv({
    TIMESTEP_PROVIDER_LM_STUDIO_BASE_URL: 'http://a/v1',
    TIMESTEP_PROVIDER_VLLM_BASE_URL: 'http://b/v1',
    TIMESTEP_PROVIDER_VLLM_API: 'responses',
    TIMESTEP_PROVIDER_EMPTY_BASE_URL: '',
  });
  assert.deepEqual([...map.getMapping().keys()], ['lm-studio', 'vllm']);
  assert.equal(map.getProvider('vllm').api, 'responses');
  assert.equal(map.getProvider('lm-studio').api, 'chat_completions');
});

test('a provider map routes its prefixes; ollama/ is always there', () => {
  const providerMap = new MultiModelProviderMap();
  providerMap.addOpenAICompatible('vllm', { baseURL: 'http://gpu:8000/v1', api: 'responses' });
  const provider = new MultiModelProvider({ providerMap });
  assert.deepEqual(provider.knownPrefixes(), ['ollama', 'openai', 'vllm']);
  assert.ok(provider.getModel('vllm/qwen') instanceof OpenAIResponsesModel);
  assert.ok(provider.getModel('ollama/llama3') instanceof OpenAIChatCompletionsModel);
});

test('Ollama: OLLAMA_BASE_URL, else OLLAMA_HOST, else localhost', () => {
  assert.equal(new OllamaProvider({ OLLAMA_BASE_URL: 'http://box:1/v1/' }).localURL(), 'http://box:1/v1');
  assert.equal(new OllamaProvider({ OLLAMA_HOST: 'box:2' }).localURL(), 'http://box:2/v1');
  assert.equal(new OllamaProvider({}).localURL(), 'http://localhost:11434/v1');
});

test('bad names and settings are ModelRoutingErrors that say what to do', () => {
  const provider = new MultiModelProvider({ providerMap: new MultiModelProviderMap() });
  assert.throws(() => provider.getModel('nope/x'), (err) => err instanceof ModelRoutingError && /known prefixes: ollama\/, openai\/\./.test(err.message));
  assert.throws(() => provider.getModel('ollama/'), /no model name after ollama\//);
  assert.throws(() => new OllamaProvider({}).getModel('big-cloud'), /set OLLAMA_API_KEY/);
  assert.throws(() => MultiModelProviderMap.fromEnv({ TIMESTEP_PROVIDER_X_BASE_URL: 'http://x', TIMESTEP_PROVIDER_X_API: 'soap' }), ModelRoutingError);
  assert.throws(() => new MultiModelProviderMap().addOpenAICompatible('a/b', { baseURL: 'http://x' }), TypeError);
});
