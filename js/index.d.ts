// Types of timestep's JavaScript module (js/index.mjs): the mirror of the Python API
// `run_agent`, `consume_result` and `RunStateStore`.
import type {
  Agent,
  AgentInputItem,
  Model,
  ModelProvider,
  NonStreamRunOptions,
  RunResult,
  RunState,
  Session as SessionInterface,
  StreamedRunResult,
} from '@openai/agents';

/**
 * Options passed through to the SDK's `run()`, less the two `runAgent` takes as arguments
 * (`session` and `stream`).
 */
export type RunAgentOptions<TContext = undefined, TAgent extends Agent<any, any> = Agent<any, any>> = Omit<
  NonStreamRunOptions<TContext, TAgent>,
  'session' | 'stream'
> & {
  /**
   * Make the run durable: started (new input) or claimed (a `RunState` from `runStore.load()`)
   * before anything runs, or `RunNotResumable` is thrown and nothing runs; held under a lease
   * while it runs; recorded as it ends (`interrupted`, `finished` or `failed`). A streamed run
   * is recorded when `consumeResult` has drained it.
   */
  runStore?: RunStateStore<TAgent, TContext>;
};

/** What a run starts from: text, input items, or a saved `RunState` to resume. */
export type RunAgentInput<TContext, TAgent extends Agent<any, any>> = string | AgentInputItem[] | RunState<TContext, TAgent>;

/**
 * Run `agent` on `input` with `session` through the SDK's `run()`, and return its result
 * unchanged: a `RunResult`, or with `stream` a `StreamedRunResult` (drain it with
 * `consumeResult`). SDK errors propagate unchanged.
 */
export function runAgent<TAgent extends Agent<any, any>, TContext = undefined>(
  agent: TAgent,
  input: RunAgentInput<TContext, TAgent>,
  session?: SessionInterface | null,
  stream?: false,
  options?: RunAgentOptions<TContext, TAgent>,
): Promise<RunResult<TContext, TAgent>>;
export function runAgent<TAgent extends Agent<any, any>, TContext = undefined>(
  agent: TAgent,
  input: RunAgentInput<TContext, TAgent>,
  session: SessionInterface | null | undefined,
  stream: true,
  options?: RunAgentOptions<TContext, TAgent>,
): Promise<StreamedRunResult<TContext, TAgent>>;
export function runAgent<TAgent extends Agent<any, any>, TContext = undefined>(
  agent: TAgent,
  input: RunAgentInput<TContext, TAgent>,
  session: SessionInterface | null | undefined,
  stream: boolean,
  options?: RunAgentOptions<TContext, TAgent>,
): Promise<RunResult<TContext, TAgent> | StreamedRunResult<TContext, TAgent>>;

/**
 * Drain a streamed result's events, wait for the run to finish (rejecting with its error if
 * it failed), and return it; return any other result as is.
 */
export function consumeResult<T extends RunResult<any, any> | StreamedRunResult<any, any>>(result: T): Promise<T>;

/** Every error timestep raises (`timestep.errors.TimestepError` in Python). */
export class TimestepError extends Error {
  constructor(message?: string, options?: ErrorOptions);
}

/** No saved state for a run (`load()` found no active row). */
export class RunStateNotFound extends TimestepError {
  constructor(message?: string, options?: ErrorOptions);
  name: 'RunStateNotFound';
}

/**
 * A saved state this SDK cannot resume: saved by Python without a JavaScript form (the message
 * carries the recorded conversion error), or refused by `RunState.fromString` (`cause`).
 */
export class InvalidRunState extends TimestepError {
  constructor(message?: string, options?: ErrorOptions);
  name: 'InvalidRunState' | 'InvalidDecision';
}

/**
 * A durable run this process cannot start or resume; nothing ran. `reason`: `finished`, `held`
 * (by `leaseOwner` until `leaseExpiresAt`), `superseded` (the state is not the run's latest
 * save), `missing`, or `lost` (this process's lease ran out while it ran).
 */
export class RunNotResumable extends TimestepError {
  name: 'RunNotResumable';
  readonly runId: string;
  readonly reason: 'finished' | 'held' | 'superseded' | 'missing' | 'lost';
  readonly status: string | null;
  readonly leaseOwner: string | null;
  readonly leaseExpiresAt: string | null;
}

/** A recorded decision that is not `{approved: boolean, message?: string | null}`. */
export class InvalidDecision extends InvalidRunState {
  name: 'InvalidDecision';
}

/**
 * A durable run's journal holds a step this process cannot replay: written by the Python SDK
 * (recover the run from Python), or altered.
 */
export class InvalidJournal extends InvalidRunState {
  name: 'InvalidJournal';
}

/**
 * Inside a function tool of a durable run: a key naming this tool call
 * (`"<run id>:<segment>:<turn>:<call id>"`), the same when a recovery runs the call again. A
 * call that was running when its process died has no journaled output and runs again (at least
 * once): give the key to the service the tool acts on as an idempotency key. `null` outside a
 * durable run.
 */
export function toolCallKey(): string | null;

/** Where a `RunStateStore` keeps its rows. */
export interface RunStateStoreOptions<TAgent extends Agent<any, any> = Agent<any, any>> {
  /** The agent graph saved states resume with (`RunState.fromString(agent, ...)`). */
  agent: TAgent;
  /** The run id; a new `crypto.randomUUID()` if omitted. */
  sessionId?: string;
  /** A `postgresql://` URI; else PG_CONNECTION_URI (unless `pgliteDir` is given). */
  connectionString?: string;
  /**
   * An embedded PGlite directory, reached through the timestep sidecar serving it (started if
   * none does); else TIMESTEP_PGLITE_DIR, else the platform's user data dir (`.../timestep/pglite`).
   */
  pgliteDir?: string;
  /** How long a durable run is held without renewal (renewed every third of it); default 60. */
  leaseSeconds?: number;
}

/**
 * Saved states of one run (`sessionId`) in the `run_states` table the Python side creates
 * (schema 14 or later). Each save is kept as history; exactly one row per run is active.
 */
export class RunStateStore<TAgent extends Agent<any, any> = Agent<any, any>, TContext = unknown> {
  constructor(options: RunStateStoreOptions<TAgent>);
  readonly agent: TAgent;
  /** The run id. */
  readonly sessionId: string;
  /** Save `state` as this run's active state, in one transaction. Throws TypeError for a non-RunState. */
  save(state: RunState<any, any>): Promise<void>;
  /**
   * The active saved state, with stored approvals and rejections applied. Throws
   * `RunStateNotFound` if the run has none, `InvalidRunState` if it cannot be resumed here.
   */
  load(): Promise<RunState<TContext, TAgent>>;
  /**
   * Take this run back, if no process holds it (its process died and its lease expired, it
   * failed, or it is interrupted), and run it to its end or next pause from its journal: a
   * journaled model response or tool output is taken from the journal, not asked for or run
   * again. Resolves with the SDK's `RunResult`; throws `RunNotResumable` if the run is finished
   * or held (and nothing runs), `InvalidJournal` if the Python SDK journaled it.
   */
  recover(options?: Omit<RunAgentOptions<TContext, TAgent>, 'runStore'> & { session?: SessionInterface | null }): Promise<RunResult<TContext, TAgent>>;
  /** Delete every saved state of this run, history included; resolves with how many rows went. */
  clear(): Promise<number>;
  /** Close the pool or the sidecar connection (the store reconnects if used again). */
  close(): Promise<void>;
}

/** Where a `Session` keeps its items. */
export interface SessionOptions {
  /** The session id; a new `crypto.randomUUID()` if omitted. */
  sessionId?: string;
  /** A `postgresql://` URI; else PG_CONNECTION_URI (unless `pgliteDir` is given). */
  connectionString?: string;
  /** An embedded PGlite directory, reached through the timestep sidecar serving it (as `RunStateStore`). */
  pgliteDir?: string;
  /** Seconds of inactivity after which the session reads as empty; null (the default) for never. */
  ttl?: number | null;
}

/**
 * `@openai/agents`' session interface on timestep's `agent_sessions` / `agent_messages` tables,
 * the ones Python's `timestep.Session` uses: a conversation either SDK continues. Items are
 * stored in the Responses API's input format (as Python stores them) and read as this SDK's.
 */
export class Session implements SessionInterface {
  constructor(options?: SessionOptions);
  readonly sessionId: string;
  readonly ttl: number | null;
  getSessionId(): Promise<string>;
  /** The latest `limit` items (all when omitted), oldest first. */
  getItems(limit?: number): Promise<AgentInputItem[]>;
  /** Append items, atomically. */
  addItems(items: AgentInputItem[]): Promise<void>;
  /** Remove and return the newest item; undefined when the session is empty. */
  popItem(): Promise<AgentInputItem | undefined>;
  /** Delete the session and its items. */
  clearSession(): Promise<void>;
  /** Close the connection; the session reconnects if used again. */
  close(): Promise<void>;
}

/** A model name cannot be routed: an unknown prefix, or a provider missing its key. */
export class ModelRoutingError extends TimestepError {
  name: 'ModelRoutingError';
}

/** Every model of one OpenAI-compatible server (vLLM, LM Studio, llama.cpp, a gateway). */
export class OpenAICompatibleProvider implements ModelProvider {
  constructor(options: { baseURL: string; apiKey?: string | null; api?: 'chat_completions' | 'responses' });
  readonly baseURL: string;
  readonly api: 'chat_completions' | 'responses';
  getModel(modelName?: string): Model;
}

/** `ollama/` models: the local server (OLLAMA_BASE_URL, OLLAMA_HOST), or Ollama's cloud for `-cloud` names (OLLAMA_API_KEY). */
export class OllamaProvider implements ModelProvider {
  constructor(env?: Record<string, string | undefined> | null);
  localURL(): string;
  getModel(modelName?: string): Model;
}

/** Prefix -> model provider. */
export class MultiModelProviderMap {
  hasPrefix(prefix: string): boolean;
  getMapping(): Map<string, ModelProvider>;
  addProvider(prefix: string, provider: ModelProvider): void;
  removeProvider(prefix: string): void;
  getProvider(prefix: string): ModelProvider | null;
  /** Route `<prefix>/<model>` to an OpenAI-compatible server; returns its provider. */
  addOpenAICompatible(
    prefix: string,
    options: { baseURL: string; apiKey?: string | null; api?: 'chat_completions' | 'responses' },
  ): OpenAICompatibleProvider;
  /** A provider for each TIMESTEP_PROVIDER_<NAME>_BASE_URL (with _API_KEY and _API) in `env`. */
  static fromEnv(env?: Record<string, string | undefined>): MultiModelProviderMap;
}

/**
 * Routes a model by its name's prefix: none or `openai/` to `openaiProvider` (default: the SDK's
 * default provider), `ollama/` to Ollama, and any prefix in `providerMap` (default: the
 * environment's). An unknown prefix throws `ModelRoutingError` listing the known ones.
 */
export class MultiModelProvider implements ModelProvider {
  constructor(options?: { providerMap?: MultiModelProviderMap | null; openaiProvider?: ModelProvider | null });
  readonly providerMap: MultiModelProviderMap;
  readonly openaiProvider: ModelProvider;
  knownPrefixes(): string[];
  getModel(modelName?: string): Promise<Model> | Model;
}

/** An embedded database cannot be kept in the directory given: the message says why, and the fix. */
export class DataDirUnusable extends TimestepError {
  name: 'DataDirUnusable';
}
