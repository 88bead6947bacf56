// The errors of timestep's JavaScript module, with the names and meanings of timestep.errors.
// Each names itself with a literal, which survives a bundler renaming its classes.

/** Every error timestep raises (timestep.errors.TimestepError). */
export class TimestepError extends Error {
  name = 'TimestepError';
}

/** No saved state for a run. */
export class RunStateNotFound extends TimestepError {
  name = 'RunStateNotFound';
}

/** A saved state this SDK cannot resume (no JavaScript form, or RunState.fromString refused it). */
export class InvalidRunState extends TimestepError {
  name = 'InvalidRunState';
}

/**
 * A durable run this process cannot start or resume, and nothing ran. `reason`: 'finished',
 * 'held' (by `leaseOwner` until `leaseExpiresAt`), 'superseded' (not the run's latest save),
 * 'missing', or 'lost' (this process's lease ran out while it ran).
 */
export class RunNotResumable extends TimestepError {
  name = 'RunNotResumable';

  constructor(message, { runId, reason, status = null, leaseOwner = null, leaseExpiresAt = null } = {}) {
    super(message);
    this.runId = runId;
    this.reason = reason;
    this.status = status;
    this.leaseOwner = leaseOwner;
    this.leaseExpiresAt = leaseExpiresAt;
  }
}

/** A recorded decision that is not {approved: boolean, message?: string|null}. */
export class InvalidDecision extends InvalidRunState {
  name = 'InvalidDecision';
}

/** A durable run's journal holds a step this process cannot replay (journaled by the other SDK, or altered). */
export class InvalidJournal extends InvalidRunState {
  name = 'InvalidJournal';
}

/** A model name cannot be routed: an unknown prefix, or a provider missing its key. */
export class ModelRoutingError extends TimestepError {
  name = 'ModelRoutingError';
}

/** An embedded database cannot be kept in the directory given (the message says why, and the fix). */
export class DataDirUnusable extends TimestepError {
  name = 'DataDirUnusable';
}
