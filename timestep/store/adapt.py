"""One type system for both backends: psycopg's adapters, shared by PostgreSQL and PGlite.

PostgreSQL connections use `ADAPTERS` directly. For PGlite, the sidecar moves values as
PostgreSQL text: `dump_params` turns Python values into text (UTF-8 bytes) plus type OIDs with
the same dumpers psycopg would use, and `RowDecoder` parses result text with psycopg's loaders.
So a value reads back as the same Python object whichever backend stored it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg
from psycopg.adapt import AdaptersMap, Dumper, PyFormat, Transformer
from psycopg.pq import Format
from psycopg.types.json import Jsonb, set_json_dumps, set_json_loads

from ..errors import InvalidParameter


class _HexByteaDumper(Dumper):
    """bytes as bytea hex text (`\\x00ff`), valid as a bind parameter on any server."""

    oid = 17
    format = Format.TEXT

    def dump(self, obj: Any) -> bytes:
        return b"\\x" + bytes(obj).hex().encode()


# The wire protocol counts a statement's parameters in 16 bits.
MAX_PARAMS = 65_535


def decode_json(data: str | bytes) -> Any:
    """JSON text as Python. msgspec, fast; for text it refuses, Python's json, which reads what
    Python's json writes: a string holding a lone surrogate ("\\ud800") round-trips, as it
    does in the SDK's SQLiteSession."""
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        return json.loads(data)


def encode_json(value: Any) -> bytes:
    """Python as JSON text: msgspec, or Python's json (escaped) for a lone surrogate."""
    try:
        return msgspec.json.encode(value)
    except UnicodeEncodeError:
        return json.dumps(value).encode()


def _make_adapters() -> AdaptersMap:
    adapters = AdaptersMap(psycopg.adapters)
    set_json_dumps(encode_json, adapters)
    set_json_loads(decode_json, adapters)
    # dict and list are stored as jsonb (read back as dict / list), on both backends.
    for fmt in (PyFormat.TEXT, PyFormat.BINARY):
        jsonb_dumper = adapters.get_dumper(Jsonb, fmt)
        adapters.register_dumper(dict, jsonb_dumper)
        adapters.register_dumper(list, jsonb_dumper)
    for cls in (bytes, bytearray, memoryview):
        adapters.register_dumper(cls, _HexByteaDumper)
    return adapters


ADAPTERS = _make_adapters()


def check_params(params: Sequence[Any]) -> None:
    """Refuse values PostgreSQL cannot store, before anything is sent."""
    if len(params) > MAX_PARAMS:
        raise InvalidParameter(
            f"a statement takes at most {MAX_PARAMS:,} parameters (PostgreSQL's protocol), not {len(params):,}; "
            "pass many values as one array or JSON parameter instead"
        )
    for index, value in enumerate(params):
        if isinstance(value, str) and "\x00" in value:
            raise InvalidParameter(
                f"parameter ${index + 1} contains a NUL character (\\x00), which PostgreSQL "
                "text cannot hold; strip it, or store the value as bytes (bytea)"
            )


def dump_params(params: Sequence[Any]) -> tuple[list[bytes | None], list[int]]:
    """Python values -> (PostgreSQL text of each value, UTF-8 encoded, as psycopg's dumpers make
    it and the sidecar puts it in the Bind message; type OID of each; 0 lets the server infer)."""
    if not params:
        return [], []
    check_params(params)
    transformer = Transformer(ADAPTERS)
    try:
        dumped = transformer.dump_sequence(params, [PyFormat.TEXT] * len(params))
    except (psycopg.ProgrammingError, psycopg.DataError, TypeError) as exc:
        raise InvalidParameter(f"cannot send a query parameter: {exc}") from exc
    texts = [None if value is None else bytes(value) for value in dumped]
    return texts, list(transformer.types)


class RowDecoder:
    """Parses rows of PostgreSQL text values for a given list of column type OIDs."""

    def __init__(self, type_oids: Sequence[int]) -> None:
        self._transformer = Transformer(ADAPTERS)
        self._transformer.set_loader_types(list(type_oids), Format.TEXT)

    def decode(self, row: Sequence[str | None]) -> tuple[Any, ...]:
        return self._transformer.load_sequence(
            [None if value is None else value.encode() for value in row]
        )
