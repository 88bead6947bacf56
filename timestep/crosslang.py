"""Convert a paused run's state between the Python and the JavaScript Agents SDK.

Python's `RunState.to_json()` (openai-agents 0.24, `$schemaVersion` 1.21) and JavaScript's
`RunState.toJSON()` (@openai/agents 0.20, `$schemaVersion` 1.22) describe the same run in two
shapes: snake_case keys and the Responses API's items in Python, camelCase keys and the JS
SDK's protocol items (`callId`, `function_call_result`, `providerData`) in JavaScript.

    js_document = python_to_js(state.to_json())      # RunState.fromString() accepts it
    py_document = js_to_python(js_document)          # RunState.from_json() accepts it

What a paused run holds converts both ways: the original and pending input, messages,
function calls and their outputs, reasoning items, handoffs, tool approvals (pending, approved,
rejected with a message), usage, the current step, the model responses and the last
processed response. Fields one SDK has and the other lacks are carried under the key
`$timestep` (zod and the Python SDK ignore it), so python -> js -> python gives back what
the Python SDK needs. Fields the other SDK must understand but cannot (computer, shell or
MCP calls, guardrail results, nested agent-tool runs, a non-JSON context) raise
`UnconvertibleRunState` naming the field.

Each side is versioned: only the pairs in SUPPORTED_PAIRS convert; any other
`$schemaVersion` is refused with `UnsupportedSchemaVersion`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import UnconvertibleRunState, UnsupportedSchemaVersion
from .invocations import js_invocation_records, py_approval_scope, py_invocation_record

__all__ = [
    "JS_SCHEMA_VERSION",
    "PYTHON_SCHEMA_VERSION",
    "SUPPORTED_PAIRS",
    "detect_sdk",
    "js_to_python",
    "python_to_js",
]

# (Python $schemaVersion, JavaScript $schemaVersion): the states of openai-agents 0.24.x and
# @openai/agents 0.20.x. A new SDK release adds a pair here once its format is checked.
SUPPORTED_PAIRS: frozenset[tuple[str, str]] = frozenset({("1.21", "1.22")})
PYTHON_SCHEMA_VERSION = "1.21"  # what js_to_python writes
JS_SCHEMA_VERSION = "1.22"  # what python_to_js writes
_PYTHON_VERSIONS = frozenset(py for py, _ in SUPPORTED_PAIRS)
_JS_VERSIONS = frozenset(js for _, js in SUPPORTED_PAIRS)

CARRY = "$timestep"  # key of what the other SDK has no field for (both SDKs ignore it)

# Python-only top-level fields, carried through JavaScript unchanged.
_PY_ONLY_FIELDS = (
    "auto_previous_response_id",
    "generated_prompt_cache_key",
    "nested_history_owned_session_item_refs",
    "generated_session_item_indexes",
    "session_items",
)
# JavaScript-only top-level fields, carried through Python unchanged.
_JS_ONLY_FIELDS = (
    "currentAgentSpan",
    "noActiveAgentRun",
    "initialInputGuardrailsCompleted",
    "currentTurnInProgress",
    "pendingAgentToolRunAliases",
    "currentTurnSessionInputItems",
    "currentTurnSessionWriteCompactedItemCount",
    "currentTurnDeferredSessionItemIndexes",
    "currentTurnBlockedSessionStartIndex",
    "currentTurnExecutedWithSessionBinding",
    "pendingLegacyCompactionSessionItems",
    "trace",
)
# Run item fields each converter maps; the rest is carried.
_PY_RUN_ITEM_FIELDS = frozenset({"type", "raw_item", "agent", "source_agent", "target_agent", "output", CARRY})
_JS_RUN_ITEM_FIELDS = frozenset(
    {"type", "rawItem", "agent", "sourceAgent", "targetAgent", "output", "toolName", "functionToolStateKey", CARRY}
)
# Lists that must be empty to convert: their entries have no counterpart in the other SDK.
_PY_MUST_BE_EMPTY = (
    "input_guardrail_results",
    "output_guardrail_results",
    "tool_input_guardrail_results",
    "tool_output_guardrail_results",
)
_JS_MUST_BE_EMPTY = (
    "inputGuardrailResults",
    "outputGuardrailResults",
    "toolInputGuardrailResults",
    "toolOutputGuardrailResults",
)
_PY_PROCESSED_ACTIONS = (
    "computer_actions",
    "custom_tool_actions",
    "local_shell_actions",
    "shell_actions",
    "apply_patch_actions",
    "mcp_approval_requests",
)
_PY_PROCESSED_CARRIED = ("interruptions", "mcp_tool_bindings", "tool_output_guardrail_result_start")
_JS_PROCESSED_ACTIONS = ("functionToolsNotFound", "computerActions", "shellActions", "applyPatchActions", "mcpApprovalRequests")
_JSON_COMPACT = (",", ":")


def detect_sdk(document: Mapping[str, Any]) -> str:
    """"python" or "javascript": which SDK wrote this state document (by its key style)."""
    if "current_turn" in document or "generated_items" in document:
        return "python"
    if "currentTurn" in document or "generatedItems" in document:
        return "javascript"
    raise UnconvertibleRunState("the document is not a run state of either SDK (no current_turn or currentTurn)")


def _check_version(document: Mapping[str, Any], known: frozenset[str], sdk: str) -> None:
    version = document.get("$schemaVersion")
    if version not in known:
        raise UnsupportedSchemaVersion(
            f"cannot convert a {sdk} run state with $schemaVersion {version!r}: supported pairs "
            f"(python, javascript) are {', '.join(f'{p}/{j}' for p, j in sorted(SUPPORTED_PAIRS))}"
        )


# ---------------------------------------------------------------------------------------
# Shared pieces


def _require(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind):
        raise UnconvertibleRunState(f"{where}: expected a JSON {_JSON_NAMES.get(kind, kind.__name__)}, got {type(value).__name__}")
    return value


_JSON_NAMES = {dict: "object", list: "array", str: "string", int: "number", bool: "boolean"}


def _must_be_empty(document: Mapping[str, Any], fields: Iterable[str], where: str = "") -> None:
    for field in fields:
        if document.get(field):
            raise UnconvertibleRunState(
                f"{where}{field}: has entries, which the other SDK cannot restore; resume this run in the SDK that paused it"
            )


def _agent_ref(value: Any, where: str) -> dict[str, Any]:
    ref = _require(value, dict, where)
    name = ref.get("name")
    if not isinstance(name, str):
        raise UnconvertibleRunState(f"{where}.name: an agent reference needs a name")
    return {"name": name}


def _lookup_key_to_js(lookup: Any, where: str) -> str:
    """Python's {"kind", "name", "namespace"?} -> JS's functionToolStateKey, a JSON array."""
    lookup = _require(lookup, dict, where)
    kind, name = lookup.get("kind"), lookup.get("name")
    if kind in ("bare", "deferred_top_level") and isinstance(name, str):
        parts = [kind, name]
    elif kind == "namespaced" and isinstance(name, str) and isinstance(lookup.get("namespace"), str):
        parts = [kind, lookup["namespace"], name]
    else:
        raise UnconvertibleRunState(f"{where}: unknown tool lookup key {lookup!r}")
    return json.dumps(parts, separators=_JSON_COMPACT)


def _lookup_key_to_py(key: Any, where: str) -> dict[str, Any]:
    try:
        parts = json.loads(_require(key, str, where))
    except json.JSONDecodeError:
        parts = None
    if isinstance(parts, list) and len(parts) == 2 and parts[0] in ("bare", "deferred_top_level"):
        return {"kind": parts[0], "name": parts[1]}
    if isinstance(parts, list) and len(parts) == 3 and parts[0] == "namespaced":
        return {"kind": "namespaced", "namespace": parts[1], "name": parts[2]}
    raise UnconvertibleRunState(f"{where}: unknown function tool state key {key!r}")


def _approval_key_to_js(tool_key: Any, where: str) -> str:
    """Python's function_tool_approvals tool_key (a bare tool name) -> JS's state key."""
    if not isinstance(tool_key, str) or not tool_key:
        raise UnconvertibleRunState(f"{where}: expected a tool name")
    return _lookup_key_to_js({"kind": "bare", "name": tool_key}, where)


def _approval_key_to_py(state_key: str, where: str) -> str:
    lookup = _lookup_key_to_py(state_key, where)
    if lookup["kind"] == "namespaced":
        raise UnconvertibleRunState(f"{where}: approvals of namespaced tools do not convert")
    return str(lookup["name"])


# ---------------------------------------------------------------------------------------
# Usage


# Python key -> JS key, for a Usage and for each of its request_usage_entries.
_USAGE_KEYS = {
    "requests": "requests",
    "input_tokens": "inputTokens",
    "output_tokens": "outputTokens",
    "total_tokens": "totalTokens",
    "input_tokens_details": "inputTokensDetails",
    "output_tokens_details": "outputTokensDetails",
    "endpoint": "endpoint",  # JS only; Python ignores it
}


def _details_to_js(details: Any) -> Any:
    """Token details: JS keeps numbers only (Python adds cache_write_tokens_details: null)."""
    if isinstance(details, list):
        return [_details_to_js(entry) for entry in details]
    if isinstance(details, dict):
        return {key: value for key, value in details.items() if isinstance(value, (int, float)) and not isinstance(value, bool)}
    return details


def _details_to_py(details: Any) -> Any:
    if isinstance(details, list):
        return [_details_to_py(entry) for entry in details]
    if isinstance(details, dict) and "cache_write_tokens" in details:
        return {**details, "cache_write_tokens_details": details.get("cache_write_tokens_details")}
    return details


def _usage_to_js(usage: Any, where: str) -> dict[str, Any]:
    usage = _require(usage, dict, where)
    out = {js: usage.get(py, 0) for py, js in _USAGE_KEYS.items() if py in usage or py.endswith("tokens") or py == "requests"}
    for key in ("inputTokensDetails", "outputTokensDetails"):
        if out.get(key) is None:
            out.pop(key, None)
        else:
            out[key] = _details_to_js(out[key])
    if "request_usage_entries" in usage:
        out["requestUsageEntries"] = [_usage_to_js(entry, f"{where}.request_usage_entries")for entry in usage["request_usage_entries"] or []]
        for entry in out["requestUsageEntries"]:
            entry.pop("requests", None)
    return out


def _usage_to_py(usage: Any, where: str) -> dict[str, Any]:
    usage = _require(usage, dict, where)
    out = {py: usage[js] for py, js in _USAGE_KEYS.items() if js in usage}
    for key in ("input_tokens_details", "output_tokens_details"):
        if key in out:
            out[key] = _details_to_py(out[key])
    if "requestUsageEntries" in usage:
        out["request_usage_entries"] = [_usage_to_py(entry, f"{where}.requestUsageEntries") for entry in usage["requestUsageEntries"] or []]
    return out


# ---------------------------------------------------------------------------------------
# Model items: the Responses API's shape (Python) <-> the JS SDK's protocol items


class _Items:
    """Converts raw model items; knows every function call's name by call id (a JS
    function_call_result names its function, a Responses function_call_output does not)."""

    def __init__(self, call_names: Mapping[str, str], *, carry: bool) -> None:
        self.call_names = call_names
        # Carry this SDK's extra fields only when the document is its own: in a document that
        # was itself converted, they were made up by the converter and are made up again.
        self.carry = carry

    # Python -> JS

    def to_js(self, item: Any, where: str) -> dict[str, Any]:
        item = _require(item, dict, where)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            return self._message_to_js(item, where)
        if kind == "function_call":
            out = {"type": "function_call", "callId": item.get("call_id"), "name": item.get("name"), "arguments": item.get("arguments", "")}
            return self._with(out, item, ("id", "status", "namespace"))
        if kind == "function_call_output":
            call_id = item.get("call_id")
            name = self.call_names.get(call_id) if isinstance(call_id, str) else None
            if name is None:
                raise UnconvertibleRunState(f"{where}: output of call {call_id!r}, whose function call is not in the state")
            out = {
                "type": "function_call_result",
                "callId": call_id,
                "name": name,
                "status": item.get("status") or "completed",
                "output": self._tool_output_to_js(item.get("output"), f"{where}.output"),
            }
            return self._with(out, item, ("id", "namespace"))
        if kind == "reasoning":
            out = {
                "type": "reasoning",
                "content": [
                    {"type": "input_text", "text": part.get("text", ""), "providerData": {"type": part.get("type", "summary_text")}}
                    for part in item.get("summary") or []
                ],
            }
            if item.get("content"):
                out["rawContent"] = [{"type": "reasoning_text", "text": part.get("text", "")} for part in item["content"]]
            if item.get("encrypted_content") is not None:
                out["providerData"] = {"encrypted_content": item["encrypted_content"]}
            return self._with(out, item, ("id",))
        raise UnconvertibleRunState(f"{where}.type: a {kind!r} item has no JavaScript counterpart in this converter")

    def _with(self, out: dict[str, Any], item: Mapping[str, Any], copied: Iterable[str]) -> dict[str, Any]:
        for key in copied:
            if item.get(key) is not None:
                out[key] = item[key]
        return out

    def _message_to_js(self, item: Mapping[str, Any], where: str) -> dict[str, Any]:
        role = item.get("role")
        content = item.get("content")
        if role == "assistant":
            parts = []
            for index, part in enumerate(_require(content, list, f"{where}.content")):
                if part.get("type") == "output_text":
                    converted = {"type": "output_text", "text": part.get("text", "")}
                    extra = {key: part[key] for key in ("annotations", "logprobs") if key in part}
                    if extra:
                        converted["providerData"] = extra
                    parts.append(converted)
                elif part.get("type") == "refusal":
                    parts.append({"type": "refusal", "refusal": part.get("refusal", "")})
                else:
                    raise UnconvertibleRunState(f"{where}.content[{index}].type: {part.get('type')!r} does not convert")
            out = {"type": "message", "role": "assistant", "status": item.get("status") or "completed", "content": parts}
            return self._with(out, item, ("id", "phase"))
        if role == "user":
            # "type" is optional on input messages in both SDKs: kept as it was
            return self._with({"role": "user", "content": self._input_content(content, where)}, item, ("type", "id"))
        if role in ("system", "developer"):
            if isinstance(content, list):
                content = "".join(part.get("text", "") for part in self._input_content(content, where))
            out = {"role": "system", "content": _require(content, str, f"{where}.content")}
            if role == "developer":
                out["providerData"] = {"role": "developer"}
            return self._with(out, item, ("type", "id"))
        raise UnconvertibleRunState(f"{where}.role: a message with role {role!r} does not convert")

    def _input_content(self, content: Any, where: str) -> Any:
        if isinstance(content, str):
            return content
        parts = []
        for index, part in enumerate(_require(content, list, f"{where}.content")):
            if not isinstance(part, dict) or part.get("type") != "input_text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise UnconvertibleRunState(f"{where}.content[{index}].type: {kind!r} input does not convert (text only)")
            parts.append({"type": "input_text", "text": part.get("text", "")})
        return parts

    def _tool_output_to_js(self, output: Any, where: str) -> Any:
        if isinstance(output, str):
            return {"type": "text", "text": output}
        if isinstance(output, list):
            return self._input_content(output, where)
        raise UnconvertibleRunState(f"{where}: a tool output must be text or input_text parts, got {type(output).__name__}")

    # JS -> Python

    def to_py(self, item: Any, where: str) -> dict[str, Any]:
        item = _require(item, dict, where)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            return self._message_to_py(item, where)
        if kind == "function_call":
            out = {"arguments": item.get("arguments", ""), "call_id": item.get("callId"), "name": item.get("name"), "type": "function_call"}
            return self._with(out, item, ("id", "status", "namespace"))
        if kind == "function_call_result":
            out = {"call_id": item.get("callId"), "output": self._tool_output_to_py(item.get("output"), f"{where}.output"), "type": "function_call_output"}
            return self._with(out, item, ("id",))
        if kind == "reasoning":
            out = {
                "id": item.get("id", ""),
                "summary": [
                    {"text": part.get("text", ""), "type": (part.get("providerData") or {}).get("type", "summary_text")}
                    for part in item.get("content") or []
                ],
                "type": "reasoning",
            }
            if item.get("rawContent"):
                out["content"] = [{"text": part.get("text", ""), "type": "reasoning_text"} for part in item["rawContent"]]
            encrypted = (item.get("providerData") or {}).get("encrypted_content")
            if encrypted is not None:
                out["encrypted_content"] = encrypted
            return out
        raise UnconvertibleRunState(f"{where}.type: a {kind!r} item has no Python counterpart in this converter")

    def _message_to_py(self, item: Mapping[str, Any], where: str) -> dict[str, Any]:
        role = item.get("role")
        content = item.get("content")
        if role == "assistant":
            parts = []
            for index, part in enumerate(_require(content, list, f"{where}.content")):
                if part.get("type") == "output_text":
                    extra = part.get("providerData") or {}
                    parts.append(
                        {"annotations": extra.get("annotations", []), "text": part.get("text", ""), "type": "output_text", "logprobs": extra.get("logprobs", [])}
                    )
                elif part.get("type") == "refusal":
                    parts.append({"refusal": part.get("refusal", ""), "type": "refusal"})
                else:
                    raise UnconvertibleRunState(f"{where}.content[{index}].type: {part.get('type')!r} does not convert")
            return {"id": item.get("id", ""), "content": parts, "role": "assistant", "status": item.get("status", "completed"), "type": "message"}
        if role == "user":
            return self._with({"content": self._input_content(content, where), "role": "user"}, item, ("type", "id"))
        if role == "system":
            real_role = (item.get("providerData") or {}).get("role", "system")
            return self._with({"content": content, "role": real_role}, item, ("type", "id"))
        raise UnconvertibleRunState(f"{where}.role: a message with role {role!r} does not convert")

    def _tool_output_to_py(self, output: Any, where: str) -> Any:
        if isinstance(output, str):
            return output
        if isinstance(output, dict) and output.get("type") == "text":
            return output.get("text", "")
        if isinstance(output, list):
            return self._input_content(output, where)
        kind = output.get("type") if isinstance(output, dict) else type(output).__name__
        raise UnconvertibleRunState(f"{where}: a {kind!r} tool output does not convert (text only)")


def _call_names(document: Mapping[str, Any], *, python: bool) -> dict[str, str]:
    """call id -> function name, for every function call a state holds (its input, the model's
    responses and the generated items: where an output's call can be); `python` says which
    SDK's document it is."""
    responses = document.get("model_responses" if python else "modelResponses") or []
    inputs = document.get("original_input" if python else "originalInput")
    raw_items = [
        *(inputs if isinstance(inputs, list) else []),
        *(document.get("pending_input" if python else "pendingInput") or []),
        *(item for response in responses if isinstance(response, dict) for item in response.get("output") or []),
        *(item.get("raw_item" if python else "rawItem") for item in document.get("generated_items" if python else "generatedItems") or [] if isinstance(item, dict)),
    ]
    names: dict[str, str] = {}
    for raw in raw_items:
        if isinstance(raw, dict) and raw.get("type") == "function_call" and isinstance(raw.get("name"), str):
            call_id = raw.get("call_id" if python else "callId")
            if isinstance(call_id, str):
                names[call_id] = raw["name"]
    return names


# ---------------------------------------------------------------------------------------
# Run items (the SDKs' wrappers around model items)


def _run_item_to_js(items: _Items, item: Any, where: str) -> dict[str, Any]:
    item = _require(item, dict, where)
    kind = item.get("type")
    js_extra = item.get(CARRY) or {}  # what a JS state had here, if it came from one
    raw = items.to_js(item.get("raw_item"), f"{where}.raw_item")
    if js_extra.get("providerData") is not None:
        raw["providerData"] = js_extra["providerData"]
    restored = {key: value for key, value in js_extra.items() if key != "providerData"}  # e.g. executionStatus
    if kind == "handoff_output_item":
        return {
            "type": kind,
            "rawItem": raw,
            "sourceAgent": _agent_ref(item.get("source_agent"), f"{where}.source_agent"),
            "targetAgent": _agent_ref(item.get("target_agent"), f"{where}.target_agent"),
            **restored,
        }
    out: dict[str, Any] = {"type": kind, "rawItem": raw, "agent": _agent_ref(item.get("agent"), f"{where}.agent"), **restored}
    if kind == "tool_approval_item":
        if item.get("tool_name") is not None:
            out["toolName"] = item["tool_name"]
        if item.get("tool_lookup_key") is not None:
            out["functionToolStateKey"] = _lookup_key_to_js(item["tool_lookup_key"], f"{where}.tool_lookup_key")
    elif kind == "tool_call_output_item":
        out["output"] = item.get("output")
    elif kind == "tool_call_item":
        if raw.get("type") == "function_call" and (item.get("tool_origin") or {}).get("type", "function") == "function":
            # JS names a function tool by its state key; with it, JS can check the call's provenance.
            lookup = item.get("tool_lookup_key") or (
                {"kind": "namespaced", "namespace": raw["namespace"], "name": raw.get("name")}
                if raw.get("namespace")
                else {"kind": "bare", "name": raw.get("name")}
            )
            out["functionToolStateKey"] = _lookup_key_to_js(lookup, f"{where}.raw_item")
    elif kind not in ("message_output_item", "reasoning_item", "handoff_call_item"):
        raise UnconvertibleRunState(f"{where}.type: a {kind!r} run item has no JavaScript counterpart in this converter")
    if items.carry:
        converted = _PY_RUN_ITEM_FIELDS | ({"tool_name", "tool_lookup_key"} if kind == "tool_approval_item" else set())
        py_extra = {key: value for key, value in item.items() if key not in converted}
        if py_extra:
            out[CARRY] = py_extra
    return out


def _run_item_to_py(items: _Items, item: Any, where: str) -> dict[str, Any]:
    item = _require(item, dict, where)
    kind = item.get("type")
    raw_js = _require(item.get("rawItem"), dict, f"{where}.rawItem")
    raw = items.to_py(raw_js, f"{where}.rawItem")
    py_extra = item.get(CARRY) or {}  # what a Python state had here, if it came from one
    js_extra = {key: value for key, value in item.items() if key not in _JS_RUN_ITEM_FIELDS}
    if raw_js.get("providerData") is not None:
        js_extra["providerData"] = raw_js["providerData"]
    if kind == "handoff_output_item":
        source = _agent_ref(item.get("sourceAgent"), f"{where}.sourceAgent")
        out = {
            "type": kind,
            "raw_item": raw,
            "agent": source,
            "source_agent": source,
            "target_agent": _agent_ref(item.get("targetAgent"), f"{where}.targetAgent"),
        }
    else:
        out = {"type": kind, "raw_item": raw, "agent": _agent_ref(item.get("agent"), f"{where}.agent")}
    if kind == "tool_call_item":
        if raw.get("type") == "function_call":
            out["tool_name"] = raw.get("name")
            out["tool_origin"] = {"type": "function"}
    elif kind == "tool_approval_item":
        out["tool_name"] = item.get("toolName", raw.get("name"))
        if item.get("functionToolStateKey") is not None:
            out["tool_lookup_key"] = _lookup_key_to_py(item["functionToolStateKey"], f"{where}.functionToolStateKey")
        out["tool_origin"] = {"type": "function"}
    elif kind == "tool_call_output_item":
        out["output"] = item.get("output")
    elif kind not in ("message_output_item", "reasoning_item", "handoff_call_item", "handoff_output_item"):
        raise UnconvertibleRunState(f"{where}.type: a {kind!r} run item has no Python counterpart in this converter")
    out.update(py_extra)
    if js_extra:
        out[CARRY] = js_extra
    return out


def _map_list(convert: Callable[[Any, str], Any], values: Any, where: str) -> list[Any]:
    return [convert(value, f"{where}[{index}]") for index, value in enumerate(_require(values or [], list, where))]


# ---------------------------------------------------------------------------------------
# Model responses


def _response_to_js(items: _Items, response: Any, where: str) -> dict[str, Any]:
    response = _require(response, dict, where)
    js_extra = response.get(CARRY) or {}
    output = _map_list(items.to_js, response.get("output"), f"{where}.output")
    for converted, provider_data in zip(output, js_extra.get("outputProviderData") or []):
        if provider_data is not None:
            converted["providerData"] = provider_data
    out = {"usage": _usage_to_js(response.get("usage") or {}, f"{where}.usage"), "output": output}
    if response.get("response_id") is not None:
        out["responseId"] = response["response_id"]
    if response.get("request_id") is not None:
        out["requestId"] = response["request_id"]
    if js_extra.get("providerData") is not None:
        out["providerData"] = js_extra["providerData"]
    return out


def _response_to_py(items: _Items, response: Any, where: str) -> dict[str, Any]:
    response = _require(response, dict, where)
    output = _require(response.get("output") or [], list, f"{where}.output")
    out = {
        "usage": _usage_to_py(response.get("usage") or {}, f"{where}.usage"),
        "output": _map_list(items.to_py, output, f"{where}.output"),
        "response_id": response.get("responseId"),
        "request_id": response.get("requestId"),
    }
    js_extra = {}
    if any(isinstance(item, dict) and item.get("providerData") is not None for item in output):
        js_extra["outputProviderData"] = [item.get("providerData") if isinstance(item, dict) else None for item in output]
    if response.get("providerData") is not None:
        js_extra["providerData"] = response["providerData"]
    if js_extra and items.carry:
        out[CARRY] = js_extra
    return out


# ---------------------------------------------------------------------------------------
# The whole state


def python_to_js(document: Mapping[str, Any], *, carry: bool = True) -> dict[str, Any]:
    """A Python `RunState.to_json()` document as JS `RunState.fromString()` reads it.

    With `carry=False` the Python-only fields are left out: for a caller that keeps the
    Python document anyway (as `RunStateStore` does), they would only add size."""
    document = _require(document, dict, "state")
    _check_version(document, _PYTHON_VERSIONS, "Python")
    _must_be_empty(document, _PY_MUST_BE_EMPTY)
    _must_be_empty(document, ("pending_session_write", "terminal_unrecoverable", "sandbox"))
    js_extra = (document.get(CARRY) or {}).get("javascript") or {}  # set if a JS state became this one
    items = _Items(_call_names(document, python=True), carry=carry and CARRY not in document)
    run_item = lambda value, where: _run_item_to_js(items, value, where)  # noqa: E731

    context = _require(document.get("context") or {}, dict, "context")
    user_context = context.get("context")
    if user_context is not None and not isinstance(user_context, dict):
        raise UnconvertibleRunState(
            f"context.context: a {type(user_context).__name__} context does not convert; JavaScript keeps a JSON object"
        )
    js_context: dict[str, Any] = {
        "usage": _usage_to_js(context.get("usage") or {}, "context.usage"),
        "approvals": {},
        "approvalInvocations": [],
        "context": user_context or {},
    }
    if context.get("approvals"):
        raise UnconvertibleRunState("context.approvals: legacy approvals do not convert")
    if context.get("hosted_mcp_approvals"):
        raise UnconvertibleRunState("context.hosted_mcp_approvals: hosted MCP approvals do not convert")
    function_approvals: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(context.get("function_tool_approvals") or []):
        where = f"context.function_tool_approvals[{index}]"
        agent = _agent_ref(entry.get("agent"), f"{where}.agent")["name"]
        decision = _require(entry.get("decision"), dict, f"{where}.decision")
        record: dict[str, Any] = {"approved": decision.get("approved", []), "rejected": decision.get("rejected", [])}
        if decision.get("rejection_messages"):
            record["messages"] = decision["rejection_messages"]
        if isinstance(decision.get("sticky_rejection_message"), str):
            record["stickyRejectMessage"] = decision["sticky_rejection_message"]
        function_approvals.setdefault(agent, {})[_approval_key_to_js(entry.get("tool_key"), f"{where}.tool_key")] = record
    if function_approvals:
        js_context["functionApprovals"] = [{"agentIdentity": agent, "approvals": records} for agent, records in function_approvals.items()]

    out: dict[str, Any] = {
        "$schemaVersion": JS_SCHEMA_VERSION,
        "currentTurn": document.get("current_turn", 0),
        "currentAgent": _agent_ref(document.get("current_agent"), "current_agent"),
        "originalInput": _input(items.to_js, document.get("original_input"), "original_input"),
        "modelResponses": _map_list(lambda r, w: _response_to_js(items, r, w), document.get("model_responses"), "model_responses"),
        "context": js_context,
        "toolUseTracker": document.get("tool_use_tracker") or {},
        "maxTurns": document.get("max_turns"),
        "inputGuardrailResults": [],
        "outputGuardrailResults": [],
        "toolInputGuardrailResults": [],
        "toolOutputGuardrailResults": [],
        "generatedItems": _map_list(run_item, document.get("generated_items"), "generated_items"),
        # JS 1.18+ provenance records (filled in below); Python's own records (sha256
        # fingerprints in context.tool_invocations) are carried, since JS cannot check them.
        "ambiguousToolInvocationCallIds": [],
        "trace": _trace_to_js(document.get("trace")),
    }
    if document.get("pending_input"):
        out["pendingInput"] = _map_list(items.to_js, document["pending_input"], "pending_input")
    out["pendingAgentToolRuns"] = {}
    step = document.get("current_step")
    if step is not None:
        out["currentStep"] = _step_to_js(items, step)
    interrupted = out.get("currentStep", {}).get("type") == "next_step_interruption"
    out["currentTurnInProgress"] = interrupted
    out["initialInputGuardrailsCompleted"] = out["currentTurn"] > 0  # a model turn ran, so they did
    out["noActiveAgentRun"] = False  # what JS writes for a paused run
    out.update(copy.deepcopy(js_extra))
    records = js_invocation_records(out["generatedItems"], out.get("currentStep", {}).get("data", {}).get("interruptions", []) if interrupted else [])
    out["completedToolInvocations"] = records["completed"]
    out["completedToolInvocationEvidence"] = records["evidence"]
    for entry in js_context.get("functionApprovals", []):
        agent = entry["agentIdentity"]
        decided = {call_id for record in entry["approvals"].values() for key in ("approved", "rejected") if isinstance(record[key], list) for call_id in record[key]}
        missing = decided - set(records["bindings"].get(agent, {}))
        if missing:
            raise UnconvertibleRunState(
                f"context.function_tool_approvals: call(s) {', '.join(sorted(missing))} of agent {agent!r} were decided but their approval items are not in the state"
            )
        bound = {call_id: records["bindings"][agent][call_id] for call_id in sorted(decided)}
        js_context["approvalInvocations"].append({"agentIdentity": agent, "invocations": bound, "approvals": {}})
    if document.get("last_model_response") is not None:
        out["lastModelResponse"] = _response_to_js(items, document["last_model_response"], "last_model_response")
    ownership = document.get("current_response_generated_item_ownership")
    if ownership is not None:
        out["currentResponseGeneratedItemOwnership"] = {
            "generatedItemStartIndex": ownership.get("start", 0),
            "generatedItemEndIndexExclusive": ownership.get("end", 0),
            "interruptionGeneratedItemIndexes": ownership.get("interruptions", []),
            "toolOutputGuardrailResultStartIndex": 0,
        }
    if document.get("last_processed_response") is not None:
        out["lastProcessedResponse"] = _processed_to_js(items, document["last_processed_response"])
    if document.get("current_turn_persisted_item_count") is not None:
        out["currentTurnPersistedItemCount"] = document["current_turn_persisted_item_count"]
    for py_key, js_key in (
        ("conversation_id", "conversationId"),
        ("previous_response_id", "previousResponseId"),
        ("reasoning_item_id_policy", "reasoningItemIdPolicy"),
    ):
        if document.get(py_key) is not None:
            out[js_key] = document[py_key]
    if items.carry:  # the Python-only fields, kept for the way back
        carried: dict[str, Any] = {key: document[key] for key in _PY_ONLY_FIELDS if key in document}
        carried["context"] = {key: context[key] for key in ("tool_invocations", "context_meta") if key in context}
        if step is not None:
            carried["current_step_data"] = {key: value for key, value in (step.get("data") or {}).items() if key != "interruptions"}
        if document.get("trace") is not None:
            carried["trace"] = document["trace"]
        out[CARRY] = {"python": carried}
    return out


def _input(convert: Callable[[Any, str], Any], value: Any, where: str) -> Any:
    """A run's input, text or items, with each item converted by `convert`."""
    if isinstance(value, str):
        return value
    return _map_list(convert, value, where)


def _trace_to_js(trace: Any) -> dict[str, Any] | None:
    if not isinstance(trace, dict) or not isinstance(trace.get("id"), str):
        return None
    return {
        "object": "trace",
        "id": trace["id"],
        "workflow_name": trace.get("workflow_name") or "Agent workflow",
        "group_id": trace.get("group_id"),
        "metadata": trace.get("metadata") or {},
    }


def _step_to_js(items: _Items, step: Any) -> dict[str, Any]:
    step = _require(step, dict, "current_step")
    kind = step.get("type")
    if kind == "next_step_interruption":
        interruptions = ((step.get("data") or {}).get("interruptions")) or []
        return {
            "type": kind,
            "data": {"interruptions": _map_list(lambda i, w: _run_item_to_js(items, i, w), interruptions, "current_step.data.interruptions")},
        }
    if kind == "next_step_run_again":
        return {"type": kind}
    if kind == "next_step_final_output":
        output = step.get("output")
        if not isinstance(output, str):
            output = json.dumps(output)
        return {"type": kind, "output": output}
    raise UnconvertibleRunState(f"current_step.type: a {kind!r} step does not convert")


def _processed_to_js(items: _Items, processed: Any) -> dict[str, Any]:
    where = "last_processed_response"
    processed = _require(processed, dict, where)
    _must_be_empty(processed, _PY_PROCESSED_ACTIONS, f"{where}.")
    functions = []
    for index, entry in enumerate(processed.get("functions") or []):
        _must_be_empty(entry, ("agent_run_state",), f"{where}.functions[{index}].")  # a nested agent-tool run
        call = items.to_js(entry.get("tool_call"), f"{where}.functions[{index}].tool_call")
        tool = entry.get("tool") or {}
        js_extra = entry.get(CARRY) or {}
        if js_extra.get("toolCallProviderData") is not None:
            call["providerData"] = js_extra["toolCallProviderData"]
        functions.append(
            {
                "toolCall": call,
                "tool": js_extra.get("tool") or {"type": "function", "name": tool.get("name", call.get("name"))},
                "mcpToolBinding": js_extra.get("mcpToolBinding"),
            }
        )
        if items.carry:
            functions[-1][CARRY] = {"tool": tool}
    handoffs = []
    for index, entry in enumerate(processed.get("handoffs") or []):
        call = items.to_js(entry.get("tool_call"), f"{where}.handoffs[{index}].tool_call")
        handoff = entry.get("handoff") or {}
        handoffs.append({"toolCall": call, "handoff": {"toolName": handoff.get("tool_name", call.get("name"))}, CARRY: {"handoff": handoff}})
    return {
        "newItems": _map_list(lambda i, w: _run_item_to_js(items, i, w), processed.get("new_items"), f"{where}.new_items"),
        "toolsUsed": processed.get("tools_used") or [],
        "handoffs": handoffs,
        "functions": functions,
        "functionToolsNotFound": [],
        "computerActions": [],
        "shellActions": [],
        "applyPatchActions": [],
        "mcpApprovalRequests": [],
        **({CARRY: {key: processed[key] for key in _PY_PROCESSED_CARRIED if key in processed}} if items.carry else {}),
    }


def js_to_python(document: Mapping[str, Any], *, carry: bool = True) -> dict[str, Any]:
    """A JS `RunState.toJSON()` document as Python `RunState.from_json()` reads it.

    With `carry=False` the JavaScript-only fields are left out (see `python_to_js`)."""
    document = _require(document, dict, "state")
    _check_version(document, _JS_VERSIONS, "JavaScript")
    _must_be_empty(document, _JS_MUST_BE_EMPTY)
    _must_be_empty(document, ("pendingAgentToolRuns", "pendingSessionWrite", "pendingSessionHistoryTransaction", "sandbox"))
    items = _Items(_call_names(document, python=False), carry=carry and CARRY not in document)
    run_item = lambda value, where: _run_item_to_py(items, value, where)  # noqa: E731
    carried = copy.deepcopy(((document.get(CARRY) or {}).get("python")) or {})

    context = _require(document.get("context") or {}, dict, "context")
    if context.get("approvals") or context.get("legacyFunctionApprovals"):
        raise UnconvertibleRunState("context.approvals: legacy approvals do not convert")
    if context.get("hostedMcpApprovals"):
        raise UnconvertibleRunState("context.hostedMcpApprovals: hosted MCP approvals do not convert")
    user_context = context.get("context") or None
    carried_context = carried.pop("context", {})
    py_context: dict[str, Any] = {
        "usage": _usage_to_py(context.get("usage") or {}, "context.usage"),
        "approvals": {},
        "tool_invocations": carried_context.get("tool_invocations", {}),
        "context": user_context,
        "context_meta": carried_context.get("context_meta")
        or {
            "original_type": "dict" if user_context is not None else "none",
            "serialized_via": "direct" if user_context is not None else "none",
            "requires_deserializer": False,
            "omitted": False,
        },
    }
    function_approvals = []
    for index, entry in enumerate(context.get("functionApprovals") or []):
        where = f"context.functionApprovals[{index}]"
        for key, record in (entry.get("approvals") or {}).items():
            tool_key = _approval_key_to_py(key, f"{where}.approvals")
            decision: dict[str, Any] = {"approved": record.get("approved", []), "rejected": record.get("rejected", [])}
            if record.get("messages"):
                decision["rejection_messages"] = record["messages"]
            if isinstance(record.get("stickyRejectMessage"), str):
                decision["sticky_rejection_message"] = record["stickyRejectMessage"]
            if decision["approved"] is True or decision["rejected"] is True:  # every call of the tool, here
                decision["sticky_scope"] = py_approval_scope(tool_key)
            function_approvals.append({"agent": {"name": entry.get("agentIdentity")}, "tool_key": tool_key, "decision": decision})
    if function_approvals:
        py_context["function_tool_approvals"] = function_approvals

    generated = _map_list(run_item, document.get("generatedItems"), "generatedItems")
    out: dict[str, Any] = {
        "$schemaVersion": PYTHON_SCHEMA_VERSION,
        "current_turn": document.get("currentTurn", 0),
        "current_agent": _agent_ref(document.get("currentAgent"), "currentAgent"),
        "original_input": _input(items.to_py, document.get("originalInput"), "originalInput"),
        "pending_input": _map_list(items.to_py, document.get("pendingInput"), "pendingInput"),
        "model_responses": _map_list(lambda r, w: _response_to_py(items, r, w), document.get("modelResponses"), "modelResponses"),
        "context": py_context,
        "tool_use_tracker": document.get("toolUseTracker") or {},
        "max_turns": document.get("maxTurns"),
        "no_active_agent_run": True,  # what Python writes for a paused run
        "input_guardrail_results": [],
        "output_guardrail_results": [],
        "tool_input_guardrail_results": [],
        "tool_output_guardrail_results": [],
        "conversation_id": document.get("conversationId"),
        "previous_response_id": document.get("previousResponseId"),
        "auto_previous_response_id": False,
        "generated_prompt_cache_key": None,
        "reasoning_item_id_policy": document.get("reasoningItemIdPolicy"),
        "nested_history_owned_session_item_refs": [],
        "generated_items": generated,
        "session_items": copy.deepcopy(generated),
        "generated_session_item_indexes": list(range(len(generated))),
    }
    ownership = document.get("currentResponseGeneratedItemOwnership")
    if ownership is not None:
        out["current_response_generated_item_ownership"] = {
            "start": ownership.get("generatedItemStartIndex", 0),
            "end": ownership.get("generatedItemEndIndexExclusive", 0),
            "interruptions": ownership.get("interruptionGeneratedItemIndexes", []),
        }
    step = document.get("currentStep")
    if step is not None:
        out["current_step"] = _step_to_py(items, step, carried.pop("current_step_data", {}))
        # Python binds a decision recorded in the state to its call's invocation record, which
        # it writes as a run pauses: written here for the calls a JavaScript run paused on.
        for interruption in out["current_step"].get("data", {}).get("interruptions", []):
            record = py_invocation_record(interruption.get("raw_item") or {})
            if record is not None:
                py_context["tool_invocations"].setdefault(interruption["raw_item"]["call_id"], record)
    if document.get("lastModelResponse") is not None:
        out["last_model_response"] = _response_to_py(items, document["lastModelResponse"], "lastModelResponse")
    if document.get("lastProcessedResponse") is not None:
        pending = (out.get("current_step") or {}).get("data", {}).get("interruptions", [])
        out["last_processed_response"] = _processed_to_py(items, document["lastProcessedResponse"], pending)
    if document.get("currentTurnPersistedItemCount") is not None:
        out["current_turn_persisted_item_count"] = document["currentTurnPersistedItemCount"]
    trace = carried.pop("trace", None)
    if trace is None and isinstance(document.get("trace"), dict) and document["trace"].get("id") not in (None, "no-op"):
        trace = {"object": "trace", "id": document["trace"]["id"], "workflow_name": document["trace"].get("workflow_name")}
    out["trace"] = trace
    out.update(carried)  # Python-only fields a Python save carried through JavaScript
    js_extra = {key: copy.deepcopy(document[key]) for key in _JS_ONLY_FIELDS if key in document}
    if js_extra and items.carry:
        out[CARRY] = {"javascript": js_extra}
    return out


def _step_to_py(items: _Items, step: Any, carried_data: Mapping[str, Any]) -> dict[str, Any]:
    step = _require(step, dict, "currentStep")
    kind = step.get("type")
    if kind == "next_step_interruption":
        interruptions = ((step.get("data") or {}).get("interruptions")) or []
        data = {
            "interruptions": _map_list(lambda i, w: _run_item_to_py(items, i, w), interruptions, "currentStep.data.interruptions"),
            "response_accepted": False,
            "llm_end_hooks_started": True,
        }
        data.update(carried_data)
        return {"type": kind, "data": data}
    if kind == "next_step_run_again":
        return {"type": kind}
    if kind == "next_step_final_output":
        return {"type": kind, "output": step.get("output")}
    raise UnconvertibleRunState(f"currentStep.type: a {kind!r} step does not convert")


def _processed_to_py(items: _Items, processed: Any, pending: list[dict[str, Any]]) -> dict[str, Any]:
    """`pending`: the current step's approval items, which Python also lists here."""
    where = "lastProcessedResponse"
    processed = _require(processed, dict, where)
    _must_be_empty(processed, _JS_PROCESSED_ACTIONS, f"{where}.")
    carried = processed.get(CARRY) or {}
    functions = []
    for index, entry in enumerate(processed.get("functions") or []):
        call = items.to_py(entry.get("toolCall"), f"{where}.functions[{index}].toolCall")
        tool = (entry.get(CARRY) or {}).get("tool") or {"name": (entry.get("tool") or {}).get("name", call.get("name"))}
        js_extra = {"tool": entry.get("tool"), "mcpToolBinding": entry.get("mcpToolBinding")}
        if (entry.get("toolCall") or {}).get("providerData") is not None:
            js_extra["toolCallProviderData"] = entry["toolCall"]["providerData"]
        functions.append({"tool_call": call, "tool": tool, **({CARRY: js_extra} if items.carry else {})})
    handoffs = []
    for index, entry in enumerate(processed.get("handoffs") or []):
        call = items.to_py(entry.get("toolCall"), f"{where}.handoffs[{index}].toolCall")
        handoff = (entry.get(CARRY) or {}).get("handoff") or {"tool_name": call.get("name")}
        handoffs.append({"tool_call": call, "handoff": handoff})
    new_items = _map_list(lambda i, w: _run_item_to_py(items, i, w), processed.get("newItems"), f"{where}.newItems")
    interruptions = carried.get("interruptions")
    if interruptions is None:
        interruptions = copy.deepcopy(pending)
    extra = {key: carried[key] for key in ("tool_output_guardrail_result_start",) if key in carried}
    return {
        **extra,
        "new_items": new_items,
        "tools_used": processed.get("toolsUsed") or [],
        "functions": functions,
        "computer_actions": [],
        "custom_tool_actions": [],
        "local_shell_actions": [],
        "shell_actions": [],
        "apply_patch_actions": [],
        "handoffs": handoffs,
        "mcp_approval_requests": [],
        "interruptions": interruptions,
        "mcp_tool_bindings": carried.get("mcp_tool_bindings") or {},
    }
