"""The records each Agents SDK binds a tool call's approval to, computed from plain JSON for
the state converter (timestep.crosslang): JavaScript's fingerprints of approved and completed
calls (agents-core toolInvocation.ts), and Python's invocation records of the calls a run paused
on, with the approval scope of a tool (agents/_tool_invocation.py). Ported, so that converting a
state needs neither SDK."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

_JSON_COMPACT = (",", ":")


# ---------------------------------------------------------------------------------------
# The JS SDK's tool invocation fingerprints (agents-core toolInvocation.ts), which a JS 1.18+
# state must carry for every approved or completed call; ported so Python states convert.

_JSON_TOKEN_PREFIX = "\u0000openai-agents-json:"
# A JSON string, or a number outside strings: the tokens JS's encodeJsonNumbers rewrites.
_JSON_STRING_OR_NUMBER = re.compile(r'"(?:[^"\\]|\\.)*"|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?')


def _canonical_number(text: str) -> str:
    mantissa, _, exponent_text = text.lower().partition("e")
    negative = mantissa.startswith("-")
    integer, _, fraction = mantissa.lstrip("-").partition(".")
    digits = f"{integer}{fraction}".lstrip("0")
    if not digits:
        return "-0" if negative else "0"
    exponent = int(exponent_text or "0") - len(fraction)
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    return f"{'-' if negative else ''}{stripped}e{exponent}"


def _encode_json_numbers(text: str) -> str:
    """Numbers become tagged strings, so 5, 5.0 and 50e-1 fingerprint alike (as in JS)."""

    def encode(match: re.Match[str]) -> str:
        token = match.group()
        if token.startswith('"'):
            decoded = json.loads(token)
            return _js_json(f"{_JSON_TOKEN_PREFIX}string:{decoded}") if decoded.startswith(_JSON_TOKEN_PREFIX) else token
        return _js_json(f"{_JSON_TOKEN_PREFIX}number:{_canonical_number(token)}")

    return _JSON_STRING_OR_NUMBER.sub(encode, text)


def _tag_number(text: str) -> str:
    return f"{_JSON_TOKEN_PREFIX}number:{_canonical_number(text)}"


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")  # JSON.parse refuses NaN and Infinity


# One of each, reused: json.loads and json.dumps with options build a new one per call.
_ARGUMENTS_AS_JS = json.JSONDecoder(parse_int=_tag_number, parse_float=_tag_number, parse_constant=_not_json)


def _parse_arguments_as_js(text: str) -> Any:
    """JSON.parse(encodeJsonNumbers(text)): JSON with every number as a tagged string.

    The parser's own number hooks do the tagging, at the speed of the C scanner. A string needs
    rewriting only if it starts with the tag, and so holds a NUL: JSON writes that `\\u0000`.
    Those rare texts go through the token-by-token port."""
    if "\\u0000" in text:
        return json.loads(_encode_json_numbers(text), parse_constant=_not_json)
    return _ARGUMENTS_AS_JS.decode(text)


_STABLE_JSON = json.JSONEncoder(ensure_ascii=False, separators=_JSON_COMPACT, sort_keys=True)


def _js_json(value: Any) -> str:
    """JSON.stringify's output for JSON data (sorted keys: the SDK's stableStringify)."""
    return _STABLE_JSON.encode(value)


def _js_fingerprint(tool_name: str, call: Mapping[str, Any]) -> str:
    """getToolInvocationFingerprint(toolName, toolCall) of the JS SDK, for a function call."""
    caller = call.get("caller")
    if isinstance(caller, dict) and caller.get("type") == "program":
        canonical_caller: dict[str, Any] = {"type": "program", "callerId": caller.get("callerId")}
    else:
        canonical_caller = {"type": "direct"}
    arguments = call.get("arguments", "")
    try:
        payload: dict[str, Any] = {"format": "json", "value": _parse_arguments_as_js(arguments)}
    except (ValueError, TypeError):
        payload = {"format": "raw", "value": arguments}
    return _js_json({"caller": canonical_caller, "type": call.get("type"), "toolName": tool_name, "payload": payload})


def js_invocation_records(generated: list[dict[str, Any]], interruptions: list[dict[str, Any]]) -> dict[str, Any]:
    """The records JS checks a state against: completed calls (a call item, then its output)
    with their evidence, and the invocation each pending approval binds to."""
    completed: dict[str, dict[str, str]] = {}
    evidence: dict[str, dict[str, Any]] = {}
    calls: dict[tuple[str, str], tuple[int, str, dict[str, Any]]] = {}
    # A completed call's item is fingerprinted again as an approval binding: compute it once.
    fingerprints: dict[tuple[int, str], str] = {}

    def fingerprint_of(tool_name: str, call: dict[str, Any]) -> str:
        key = (id(call), tool_name)
        if key not in fingerprints:
            fingerprints[key] = _js_fingerprint(tool_name, call)
        return fingerprints[key]

    for index, item in enumerate(generated):
        raw = item.get("rawItem") or {}
        kind = item.get("type")
        if kind == "handoff_call_item":
            calls[(item["agent"]["name"], raw.get("callId"))] = (index, f"handoff:{raw.get('name')}", raw)
        elif kind == "tool_call_item" and raw.get("type") == "function_call" and item.get("functionToolStateKey"):
            calls[(item["agent"]["name"], raw.get("callId"))] = (index, item["functionToolStateKey"], raw)
        elif kind in ("handoff_output_item", "tool_call_output_item"):
            agent = (item.get("sourceAgent") if kind == "handoff_output_item" else item.get("agent")) or {}
            found = calls.pop((agent.get("name"), raw.get("callId")), None)
            if found is None:
                continue
            call_index, tool_name, call = found
            fingerprint = fingerprint_of(tool_name, call)
            completed.setdefault(agent["name"], {})[raw["callId"]] = fingerprint
            evidence.setdefault(agent["name"], {})[raw["callId"]] = {
                "fingerprint": fingerprint,
                "items": [{"generatedItemIndex": call_index}, {"generatedItemIndex": index}],
            }
    bindings: dict[str, dict[str, str]] = {}
    for item in [*generated, *interruptions]:
        # An approval binds to its call: the approval item, or once resolved, the call item.
        if item.get("type") == "tool_approval_item" or (item.get("type") == "tool_call_item" and item.get("functionToolStateKey")):
            raw = item.get("rawItem") or {}
            tool_name = item.get("functionToolStateKey") or item.get("toolName") or raw.get("name")
            bindings.setdefault(item["agent"]["name"], {})[raw.get("callId")] = fingerprint_of(tool_name, raw)
    return {
        "completed": [{"agentIdentity": agent, "invocations": records} for agent, records in completed.items()],
        "evidence": [{"agentIdentity": agent, "invocations": records} for agent, records in evidence.items()],
        "bindings": bindings,
    }


# ---------------------------------------------------------------------------------------
# The Python SDK's tool invocation records (agents/_tool_invocation.py): the approval scope of a
# tool, and the fingerprint of a call, which bind a decision recorded in a state to its call.

# The fields of a call its fingerprint covers (a function call's name is in its scope instead).
_PY_SEMANTIC_FIELDS = ("type", "server_label", "arguments", "input", "action", "actions", "pending_safety_checks",
                       "operation", "operations", "environment", "caller")
_PY_FINGERPRINT_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _py_fingerprint(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(_PY_FINGERPRINT_JSON.encode(payload).encode("utf-8")).hexdigest()


def py_approval_scope(tool_name: str) -> str:
    """The scope of a decision on every call of function tool `tool_name` (not namespaced)."""
    return _py_fingerprint({"type": "function_call", "tool_lookup_key": ["bare", tool_name]})


def py_invocation_record(call: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record Python keeps of a function call waiting for approval, or None for a call
    that is not a plain function call (its record is left to Python)."""
    if call.get("type") != "function_call" or call.get("namespace") or not call.get("call_id") or "arguments" not in call:
        return None
    scope = py_approval_scope(str(call.get("name")))
    semantic: dict[str, Any] = {"approval_scope": scope}
    for field in _PY_SEMANTIC_FIELDS:
        value = call.get(field)
        if value is not None:
            semantic[field] = _py_arguments(value) if field == "arguments" else _without_none(value)
    return {"type": "function_call", "approval_scope": scope, "fingerprint": _py_fingerprint(semantic), "executed": False, "completed": False}


def _py_arguments(value: Any) -> Any:
    """A call's arguments as Python fingerprints them: parsed when they are JSON."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value, parse_constant=_not_json)
    except ValueError:
        return value


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value]
    return value
