// Serving one client: frames in, requests checked and run on the database, replies out.
// A client is the owner (stdin/stdout) or a process connected to the socket. Nothing a client
// sends can stop the sidecar serving the others: a frame that cannot be read is answered with
// an error, and a client whose stream cannot be trusted any more is dropped.
import fs from 'node:fs';
import os from 'node:os';
import { decode } from '@msgpack/msgpack';
import { encodeFrame, FrameReader, MAX_REQUEST_FRAME } from './frames.mjs';
import { DatabaseBroken, errorReply } from './database.mjs';
import { isValidSetup } from './isolation.mjs';

// After answering its last request, the sidecar reads stdin for up to POLL_MS before it
// sleeps: on a VM, waking a sleeping process costs ~40 µs, more than a short query itself,
// and a caller that awaits each reply sends its next request within that. (Python polls for
// its reply the same way: timestep/store/sidecar.py.) After a poll that found nothing, the
// next POLL_BACKOFF answers sleep at once: an idle or slow caller costs a fifth of a poll per
// request. Only with a second core, for the caller to run on meanwhile.
const POLL_MS = os.availableParallelism() >= 2 ? 0.15 : 0;
const POLL_BACKOFF = 4;
const MAX_UNREAD = 256 * 2 ** 20;

/** Reads `input`'s fd without blocking for up to POLL_MS; hands what comes to `onData`. */
class InputPoller {
  #fd;
  #input;
  #buffer = Buffer.allocUnsafe(64 * 1024);
  #sleepNext = 0;

  constructor(input) {
    this.#input = input;
    this.#fd = input.fd;
  }

  poll(onData) {
    // Data the stream has already taken is delivered by the stream, in order.
    if (!POLL_MS || this.#input.readableLength || this.#input.destroyed) return;
    if (this.#sleepNext) {
      this.#sleepNext -= 1;
      return;
    }
    const deadline = performance.now() + POLL_MS;
    while (performance.now() < deadline) {
      let n;
      try {
        n = fs.readSync(this.#fd, this.#buffer); // the fd is non-blocking: EAGAIN when empty
      } catch (err) {
        if (err.code === 'EAGAIN') continue;
        return; // the stream reports real errors itself
      }
      if (n > 0) onData(Buffer.from(this.#buffer.subarray(0, n)));
      return; // n === 0 is the end of input: the stream sees it too
    }
    this.#sleepNext = POLL_BACKOFF;
  }
}

const isBytes = (value) => value instanceof Uint8Array;
const isParams = (params) => Array.isArray(params) && params.every((p) => p === null || typeof p === 'string' || isBytes(p));
const isTypes = (types, params) =>
  Array.isArray(types) && types.length <= params.length && types.every((t) => Number.isInteger(t) && t >= 0 && t <= 0xffffffff);
const isStatement = (s) => Array.isArray(s) && s.length === 3 && typeof s[0] === 'string' && isParams(s[1]) && isTypes(s[2], s[1]);

/** What is wrong with a decoded frame as a request, or undefined if nothing. */
function problemWith(request) {
  if (request === null || typeof request !== 'object' || Array.isArray(request)) return 'a frame is not a request (not a map)';
  const { type, id } = request;
  if (!Number.isSafeInteger(id) || id < 1) return 'a request needs an id, a positive integer';
  if (request.setup != null && !isValidSetup(request.setup)) return `setup ${JSON.stringify(request.setup)} is not a search_path timestep sets`;
  if (request.relaxed != null && typeof request.relaxed !== 'boolean') return 'relaxed must be a boolean';
  switch (type) {
    case 'query':
      if (typeof request.sql !== 'string' || !isParams(request.params) || !isTypes(request.types, request.params))
        return 'a query needs sql (a string), params (strings, bytes or nil) and types (OIDs, no more than params)';
      return undefined;
    case 'batch':
      if (!Array.isArray(request.statements) || !request.statements.every(isStatement))
        return 'a batch needs statements, each [sql, params, types]';
      return undefined;
    case 'exec':
      return typeof request.sql === 'string' ? undefined : 'exec needs sql (a string)';
    case 'close':
      return undefined;
    default:
      return `unknown request type ${JSON.stringify(type)}`;
  }
}

/**
 * Serve frames from `input`, replying on `output`, until `input` ends or is dropped (then
 * `onEnd`). `owner`: the stdin/stdout client. `onClose(output)`: the client said goodbye.
 * `onFatal(err)`: PGlite itself failed; the sidecar must stop. `tracker`: told when requests
 * start and finish (maintenance.mjs waits for quiet).
 */
export function serve({ database, input, output, owner, onEnd, onClose, onFatal, tracker }) {
  const reader = new FrameReader(MAX_REQUEST_FRAME);
  const send = (message) => {
    if (output.destroyed) return;
    output.write(encodeFrame(message));
    // Replies a client does not read pile up here. Its requests are still read (a client may
    // write a request while we write a reply: pausing could deadlock both), but one that lets
    // more than MAX_UNREAD bytes pile up is dropped. Not the owner: it reads as it writes.
    if (!owner && output.writableLength > MAX_UNREAD) {
      input.removeListener('data', onData);
      output.destroy();
      end();
    }
  };
  // Only a pipe: its fd is non-blocking, so a poll never waits on it.
  const poller = input === process.stdin && fs.fstatSync(input.fd).isFIFO() ? new InputPoller(input) : undefined;
  let inFlight = 0;
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    onEnd();
  };

  async function handle(request) {
    const { id } = request;
    try {
      if (request.type === 'close') {
        send({ type: 'closed', id });
        return onClose(output);
      }
      return await database.run(request, owner, send);
    } catch (err) {
      send(errorReply(id, err));
      if (err instanceof DatabaseBroken) onFatal(err);
    }
  }

  function onData(chunk) {
    let bodies;
    try {
      bodies = reader.feed(chunk);
    } catch (err) {
      // The length was too large: the stream's frame boundaries are lost with the body we
      // refuse to buffer. Say why, and drop this client.
      send(errorReply(0, { code: 'protocol', message: err.message }));
      input.removeListener('data', onData);
      input.pause();
      end();
      return;
    }
    for (const body of bodies) {
      let request;
      try {
        request = decode(body);
      } catch (err) {
        send(errorReply(0, { code: 'protocol', message: `undecodable frame: ${err.message}` }));
        continue;
      }
      const problem = problemWith(request);
      if (problem) {
        const id = Number.isSafeInteger(request?.id) && request.id > 0 ? request.id : 0;
        send(errorReply(id, { code: 'protocol', message: problem }));
        continue;
      }
      inFlight += 1;
      tracker.started();
      handle(request).finally(() => {
        inFlight -= 1;
        tracker.finished();
        if (inFlight === 0) poller?.poll(onData);
      });
    }
  }
  input.on('data', onData);
  input.on('end', end);
  input.on('close', end);
  input.on('error', end);
}
