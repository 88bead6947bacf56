"""A local OpenAI-compatible model server that plays a script of replies, for offline tests.

    from timestep.testing import FakeModelServer, text, call

    with FakeModelServer([call("wire_money", {"amount": 5}), text("Sent.")]) as server:
        agent = Agent(name="banker", model=server.responses_model(), tools=[wire_money])
        result = await Runner.run(agent, "send 5")
        assert server.requests[1].body["input"][-1]["type"] == "function_call_output"

It serves the Responses API (`POST /v1/responses`) and Chat Completions
(`POST /v1/chat/completions`), streaming (server-sent events) and not, on 127.0.0.1 at a
free port, and records every request. Each request takes the next reply of the script; a
reply may also be a function of the request. The real `openai` client and the real Agents
SDK `Runner` talk to it as to OpenAI, so tests exercise everything but the network. With the
pytest plugin (installed with timestep), the `fake_model_server` fixture gives a started
server with an empty script.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
    from agents.models.openai_responses import OpenAIResponsesModel
    from openai import AsyncOpenAI

__all__ = [
    "FakeModelServer",
    "FunctionCall",
    "RecordedRequest",
    "Reply",
    "call",
    "calls",
    "error",
    "text",
]


@dataclass(frozen=True)
class FunctionCall:
    """One function (tool) call the model makes; `arguments` is JSON text."""

    name: str
    arguments: str = "{}"
    call_id: str | None = None  # default: call_<request>_<index>


@dataclass(frozen=True)
class Reply:
    """What the model answers to one request: text, function calls, or an HTTP error."""

    text: str | None = None
    calls: tuple[FunctionCall, ...] = ()
    reasoning: str | None = None  # a reasoning item (with this summary) before the rest
    input_tokens: int = 10
    output_tokens: int = 5
    status: int = 200  # an error reply when not 200
    error_message: str = ""
    # Called in the server's thread once half of a streamed reply's events are sent and
    # flushed: a crash test's moment to kill the client in the middle of a stream.
    midway: Callable[[], None] | None = field(default=None, compare=False)


def text(content: str, *, input_tokens: int = 10, output_tokens: int = 5, reasoning: str | None = None) -> Reply:
    """The model answers with a text message (after a reasoning item, if `reasoning` is given)."""
    return Reply(text=content, input_tokens=input_tokens, output_tokens=output_tokens, reasoning=reasoning)


def call(
    name: str, arguments: dict[str, Any] | str | None = None, *, call_id: str | None = None, reasoning: str | None = None
) -> Reply:
    """The model calls one function."""
    return calls(FunctionCall(name, _arguments_json(arguments), call_id), reasoning=reasoning)


def calls(*function_calls: FunctionCall | tuple[str, dict[str, Any] | str], reasoning: str | None = None) -> Reply:
    """The model calls several functions in one turn (parallel tool calls)."""
    made = tuple(
        fc if isinstance(fc, FunctionCall) else FunctionCall(fc[0], _arguments_json(fc[1])) for fc in function_calls
    )
    return Reply(calls=made, reasoning=reasoning)


def error(status: int = 500, message: str = "fake model server error") -> Reply:
    """The server answers with an HTTP error."""
    return Reply(status=status, error_message=message)


def _arguments_json(arguments: dict[str, Any] | str | None) -> str:
    if arguments is None:
        return "{}"
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


@dataclass
class RecordedRequest:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def api(self) -> str:
        """`responses` or `chat_completions`."""
        return "chat_completions" if self.path.endswith("/chat/completions") else "responses"

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    def text(self) -> str:
        """Every piece of text the request carries (instructions, messages, tool outputs), joined."""
        return "\n".join(_strings(self.body.get("input", self.body.get("messages", []))) + _strings(self.body.get("instructions")))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [s for key, item in value.items() if key in ("content", "text", "output", "arguments") for s in _strings(item)]
    return []


ScriptEntry = Union[Reply, Callable[[RecordedRequest], Reply]]


@dataclass
class _Script:
    entries: deque[ScriptEntry] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[RecordedRequest] = field(default_factory=list)
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def take(self, request: RecordedRequest) -> tuple[int, Reply | None]:
        with self.lock:
            self.requests.append(request)
            number = next(self.counter)
            entry = self.entries.popleft() if self.entries else None
        if entry is None or isinstance(entry, Reply):
            return number, entry
        return number, entry(request)


class _Server(ThreadingHTTPServer):
    """A thread per request, and a listen backlog deep enough for hundreds of concurrent
    clients (socketserver's default of 5 made bursts of connections wait or fail)."""

    request_queue_size = 1024


class FakeModelServer:
    """An OpenAI-compatible HTTP server on 127.0.0.1 that plays a script of replies."""

    def __init__(self, script: Iterable[ScriptEntry] = (), *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._script = _Script(deque(script))
        self._host = host
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def add(self, *replies: ScriptEntry) -> FakeModelServer:
        """Append replies to the script."""
        with self._script.lock:
            self._script.entries.extend(replies)
        return self

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order."""
        with self._script.lock:
            return list(self._script.requests)

    @property
    def remaining(self) -> int:
        """Replies not yet played."""
        with self._script.lock:
            return len(self._script.entries)

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. http://127.0.0.1:38017/v1."""
        if self._server is None:
            raise RuntimeError("the fake model server is not started; use it as a context manager or call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeModelServer:
        handler = type("Handler", (_Handler,), {"script": self._script})
        self._server = _Server((self._host, self._port), handler)
        self._server.daemon_threads = True
        # A short poll interval: stop() waits for serve_forever to notice, up to one interval.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="fake-model-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def client(self, api_key: str = "fake-key") -> AsyncOpenAI:
        """An `openai.AsyncOpenAI` client for this server (no retries: errors show at once)."""
        from openai import AsyncOpenAI

        return AsyncOpenAI(base_url=self.base_url, api_key=api_key, max_retries=0)

    def responses_model(self, model: str = "gpt-4.1") -> OpenAIResponsesModel:
        """An Agents SDK model that talks to this server through the Responses API."""
        from agents.models.openai_responses import OpenAIResponsesModel

        return OpenAIResponsesModel(model=model, openai_client=self.client())

    def chat_model(self, model: str = "gpt-4.1") -> OpenAIChatCompletionsModel:
        """An Agents SDK model that talks to this server through Chat Completions."""
        from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel

        return OpenAIChatCompletionsModel(model=model, openai_client=self.client())


class _Handler(BaseHTTPRequestHandler):
    script: _Script
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by design
        pass

    def do_POST(self) -> None:  # noqa: N802 - the http.server naming
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return self._send_json(400, {"error": {"message": "request body is not JSON"}})
        path = self.path.split("?", 1)[0]
        if not path.endswith(("/responses", "/chat/completions")):
            return self._send_json(404, {"error": {"message": f"the fake model server does not serve {path}"}})
        request = RecordedRequest(path, {k.lower(): v for k, v in self.headers.items()}, body)
        number, reply = self.script.take(request)
        if reply is None:
            message = f"FakeModelServer: the script has no reply left for request {number} ({request.api}, model {request.model!r}); add one"
            return self._send_json(400, {"error": {"message": message, "type": "invalid_request_error"}})
        if reply.status != 200:
            return self._send_json(reply.status, {"error": {"message": reply.error_message, "type": "server_error"}})
        if request.api == "responses":
            response = _responses_body(number, request.model, reply)
            if request.stream:
                return self._send_events(_responses_events(response), reply.midway)
            return self._send_json(200, response)
        completion = _chat_body(number, request.model, reply)
        if request.stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return self._send_events(_chat_events(completion, reply, include_usage), reply.midway)
        return self._send_json(200, completion)

    # Every response closes its connection: a kept-alive connection would tie the client's
    # pool to the event loop of one test, and the openai client closes leftover pooled
    # connections on whatever loop runs when it is collected.
    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def _send_events(
        self, events: Iterable[tuple[str | None, dict[str, Any] | str]], midway: Callable[[], None] | None = None
    ) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        listed = list(events)
        for index, (name, data) in enumerate(listed):
            if midway is not None and index == len(listed) // 2:
                midway()
            payload = data if isinstance(data, str) else json.dumps(data)
            prefix = f"event: {name}\n" if name else ""
            try:
                self.wfile.write(f"{prefix}data: {payload}\n\n".encode())
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the client went away mid-stream
                break
        self.close_connection = True


# Responses API


def _responses_body(number: int, model: str, reply: Reply) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    if reply.reasoning is not None:
        output.append(
            {"type": "reasoning", "id": f"rs_{number}", "summary": [{"type": "summary_text", "text": reply.reasoning}]}
        )
    if reply.text is not None:
        output.append(
            {
                "type": "message",
                "id": f"msg_{number}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}],
            }
        )
    for index, fc in enumerate(reply.calls):
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{number}_{index}",
                "call_id": fc.call_id or f"call_{number}_{index}",
                "name": fc.name,
                "arguments": fc.arguments,
                "status": "completed",
            }
        )
    return {
        "id": f"resp_{number}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": reply.input_tokens,
            "output_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def _responses_events(response: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    sequence = itertools.count()

    def event(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, "sequence_number": next(sequence), **fields}

    in_progress = {**response, "status": "in_progress", "output": [], "usage": None}
    yield event("response.created", response=in_progress)
    yield event("response.in_progress", response=in_progress)
    for index, item in enumerate(response["output"]):
        if item["type"] == "message":
            part = item["content"][0]
            yield event("response.output_item.added", output_index=index, item={**item, "status": "in_progress", "content": []})
            yield event("response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part={**part, "text": ""})
            for piece in _pieces(part["text"]):
                yield event("response.output_text.delta", item_id=item["id"], output_index=index, content_index=0, delta=piece, logprobs=[])
            yield event("response.output_text.done", item_id=item["id"], output_index=index, content_index=0, text=part["text"], logprobs=[])
            yield event("response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=part)
        elif item["type"] == "reasoning":
            yield event("response.output_item.added", output_index=index, item={**item, "summary": []})
        else:
            yield event("response.output_item.added", output_index=index, item={**item, "status": "in_progress", "arguments": ""})
            for piece in _pieces(item["arguments"]):
                yield event("response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=piece)
            yield event("response.function_call_arguments.done", item_id=item["id"], output_index=index, name=item["name"], arguments=item["arguments"])
        yield event("response.output_item.done", output_index=index, item=item)
    yield event("response.completed", response=response)


def _pieces(value: str, size: int = 8) -> list[str]:
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]


# Chat Completions


def _chat_body(number: int, model: str, reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.calls:
        message["tool_calls"] = [
            {"id": fc.call_id or f"call_{number}_{index}", "type": "function", "function": {"name": fc.name, "arguments": fc.arguments}}
            for index, fc in enumerate(reply.calls)
        ]
    return {
        "id": f"chatcmpl_{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if reply.calls else "stop", "logprobs": None}],
        "usage": {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
        },
    }


def _chat_events(completion: dict[str, Any], reply: Reply, include_usage: bool) -> Iterator[tuple[None, dict[str, Any] | str]]:
    base = {"id": completion["id"], "object": "chat.completion.chunk", "created": completion["created"], "model": completion["model"]}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> tuple[None, dict[str, Any]]:
        return None, {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}

    yield chunk({"role": "assistant", "content": ""})
    if reply.text is not None:
        for piece in _pieces(reply.text):
            yield chunk({"content": piece})
    message = completion["choices"][0]["message"]
    for index, tool_call in enumerate(message.get("tool_calls", [])):
        function = tool_call["function"]
        yield chunk({"tool_calls": [{"index": index, "id": tool_call["id"], "type": "function", "function": {"name": function["name"], "arguments": ""}}]})
        for piece in _pieces(function["arguments"]):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, completion["choices"][0]["finish_reason"])
    if include_usage:
        yield None, {**base, "choices": [], "usage": completion["usage"]}
    yield None, "[DONE]"
