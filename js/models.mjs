// Model routing by prefix, as timestep/models.py routes in Python: `new Agent({ model:
// 'ollama/gpt-oss:20b' })` picks the backend by name alone.
//
// - no prefix, or `openai/`: the SDK's default model provider (OpenAI, unless
//   setDefaultModelProvider chose another);
// - `ollama/`: Ollama's OpenAI-compatible Chat Completions endpoint. A name ending in `-cloud`
//   goes to Ollama's cloud (OLLAMA_CLOUD_BASE_URL, default https://ollama.com/v1) as the name
//   without `-cloud`, with OLLAMA_API_KEY as bearer token; any other name to the local server
//   (OLLAMA_BASE_URL, else OLLAMA_HOST, else http://localhost:11434/v1);
// - any OpenAI-compatible server under a prefix of your own (addOpenAICompatible), or from the
//   environment (TIMESTEP_PROVIDER_<NAME>_BASE_URL, _API_KEY, _API);
// - an unknown prefix is a ModelRoutingError that lists the known ones.
import { OpenAIChatCompletionsModel, OpenAIResponsesModel, Runner } from '@openai/agents';
import OpenAI from 'openai';
import { ModelRoutingError } from './errors.mjs';

const APIS = ['chat_completions', 'responses'];
const OLLAMA_LOCAL_URL = 'http://localhost:11434/v1';
const OLLAMA_CLOUD_URL = 'https://ollama.com/v1';
const CLOUD_SUFFIX = '-cloud';
const NO_KEY = 'unused'; // the openai client wants some key; local servers ignore it
const ENV_PROVIDER = /^TIMESTEP_PROVIDER_([A-Z0-9_]+)_BASE_URL$/;

/** OpenAI clients, one per (base URL, key), made on first use. */
class Clients {
  #clients = new Map();

  get(baseURL, apiKey) {
    const key = `${baseURL}\u0000${apiKey}`;
    if (!this.#clients.has(key)) this.#clients.set(key, new OpenAI({ baseURL, apiKey }));
    return this.#clients.get(key);
  }
}

function modelOf(name, client, api) {
  return api === 'responses' ? new OpenAIResponsesModel(client, name) : new OpenAIChatCompletionsModel(client, name);
}

/** Every model of one OpenAI-compatible server (vLLM, LM Studio, llama.cpp, a gateway). */
export class OpenAICompatibleProvider {
  #clients = new Clients();

  constructor({ baseURL, apiKey = null, api = 'chat_completions' } = {}) {
    if (!baseURL) throw new TypeError('OpenAICompatibleProvider needs { baseURL }');
    if (!APIS.includes(api)) throw new TypeError(`api must be one of ${APIS.join(', ')}, not ${JSON.stringify(api)}`);
    this.baseURL = baseURL;
    this.api = api;
    this.apiKey = apiKey || NO_KEY;
  }

  getModel(modelName) {
    if (!modelName) throw new ModelRoutingError(`no model name given for the server at ${this.baseURL}`);
    return modelOf(modelName, this.#clients.get(this.baseURL, this.apiKey), this.api);
  }
}

/** `ollama/` models: the local Ollama server, or Ollama's cloud for `-cloud` models; the environment is read per model. */
export class OllamaProvider {
  #env;
  #clients = new Clients();

  constructor(env = null) {
    this.#env = env;
  }

  #var(name) {
    return (this.#env ?? process.env)[name] || null;
  }

  localURL() {
    const configured = this.#var('OLLAMA_BASE_URL');
    if (configured) return configured.replace(/\/+$/, '');
    const host = this.#var('OLLAMA_HOST');
    if (host) return `${(host.includes('://') ? host : `http://${host}`).replace(/\/+$/, '')}/v1`;
    return OLLAMA_LOCAL_URL;
  }

  getModel(modelName) {
    if (!modelName) throw new ModelRoutingError('no model name after ollama/ (e.g. ollama/gpt-oss:20b)');
    if (modelName.endsWith(CLOUD_SUFFIX)) {
      const apiKey = this.#var('OLLAMA_API_KEY');
      if (!apiKey) {
        throw new ModelRoutingError(`ollama/${modelName} is an Ollama cloud model: set OLLAMA_API_KEY to your ollama.com API key`);
      }
      const baseURL = (this.#var('OLLAMA_CLOUD_BASE_URL') || OLLAMA_CLOUD_URL).replace(/\/+$/, '');
      return modelOf(modelName.slice(0, -CLOUD_SUFFIX.length), this.#clients.get(baseURL, apiKey), 'chat_completions');
    }
    return modelOf(modelName, this.#clients.get(this.localURL(), 'ollama'), 'chat_completions');
  }
}

/** Prefix -> model provider. */
export class MultiModelProviderMap {
  #providers = new Map();

  hasPrefix(prefix) {
    return this.#providers.has(prefix);
  }

  getMapping() {
    return new Map(this.#providers);
  }

  addProvider(prefix, provider) {
    this.#providers.set(prefix, provider);
  }

  removeProvider(prefix) {
    this.#providers.delete(prefix);
  }

  getProvider(prefix) {
    return this.#providers.get(prefix) ?? null;
  }

  /** Route `<prefix>/<model>` to an OpenAI-compatible server; returns its provider. */
  addOpenAICompatible(prefix, { baseURL, apiKey = null, api = 'chat_completions' } = {}) {
    if (!prefix || prefix.includes('/')) throw new TypeError(`a prefix is a non-empty name without '/', not ${JSON.stringify(prefix)}`);
    const provider = new OpenAICompatibleProvider({ baseURL, apiKey, api });
    this.addProvider(prefix, provider);
    return provider;
  }

  /**
   * A map with a provider for each TIMESTEP_PROVIDER_<NAME>_BASE_URL in `env`: `<NAME>`
   * lower-cased, `_` as `-`, is the prefix; _API_KEY and _API (chat_completions or responses)
   * are optional.
   */
  static fromEnv(env = process.env) {
    const map = new MultiModelProviderMap();
    for (const [variable, baseURL] of Object.entries(env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const match = ENV_PROVIDER.exec(variable);
      if (!match || !baseURL) continue;
      const name = match[1];
      const api = env[`TIMESTEP_PROVIDER_${name}_API`] || 'chat_completions';
      if (!APIS.includes(api)) throw new ModelRoutingError(`TIMESTEP_PROVIDER_${name}_API='${api}': use one of ${APIS.join(', ')}`);
      map.addOpenAICompatible(name.toLowerCase().replaceAll('_', '-'), { baseURL, apiKey: env[`TIMESTEP_PROVIDER_${name}_API_KEY`] || null, api });
    }
    return map;
  }
}

/**
 * Routes a model by its name's prefix: none or `openai/` to `openaiProvider` (default: the
 * SDK's default provider), `ollama/` to Ollama, and any prefix in `providerMap` (default: the
 * environment's TIMESTEP_PROVIDER_* servers).
 */
export class MultiModelProvider {
  constructor({ providerMap = null, openaiProvider = null } = {}) {
    this.providerMap = providerMap ?? MultiModelProviderMap.fromEnv();
    if (!this.providerMap.hasPrefix('ollama')) this.providerMap.addProvider('ollama', new OllamaProvider());
    this.openaiProvider = openaiProvider ?? new Runner().config.modelProvider; // the SDK's default, resolved lazily
  }

  knownPrefixes() {
    return [...new Set(['openai', ...this.providerMap.getMapping().keys()])].sort();
  }

  getModel(modelName) {
    if (modelName && modelName.includes('/')) {
      const slash = modelName.indexOf('/');
      const prefix = modelName.slice(0, slash);
      const rest = modelName.slice(slash + 1);
      if (prefix === 'openai') return this.openaiProvider.getModel(rest);
      const provider = this.providerMap.getProvider(prefix);
      if (provider) return provider.getModel(rest);
      const known = this.knownPrefixes().map((p) => `${p}/`).join(', ');
      throw new ModelRoutingError(
        `unknown model prefix '${prefix}/' in '${modelName}'; known prefixes: ${known}. ` +
          `Add one with MultiModelProviderMap.addOpenAICompatible() or TIMESTEP_PROVIDER_${prefix.toUpperCase().replaceAll('-', '_')}_BASE_URL`,
      );
    }
    return this.openaiProvider.getModel(modelName);
  }
}
