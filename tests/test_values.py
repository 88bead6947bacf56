"""Values round-trip exactly, and the same on both backends."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timestep.errors import DataError, InvalidParameter
from timestep.store import Store

pytestmark = pytest.mark.anyio

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UTC = dt.timezone.utc


@pytest.mark.parametrize(
    ("column_type", "value"),
    [
        ("text", ""),
        ("text", "héllo wörld ✓ 日本語 😀 \U0010ffff"),
        ("text", "quote ' and \" and \\ and $1 and ; DROP TABLE x"),
        ("bigint", INT64_MIN),
        ("bigint", INT64_MAX),
        ("bigint", 0),
        ("integer", -(2**31)),
        ("double precision", 0.1),
        ("double precision", -1.5e308),
        ("double precision", 5e-324),
        ("double precision", math.inf),
        ("double precision", 2.0),
        ("boolean", True),
        ("boolean", False),
        ("bytea", b""),
        ("bytea", bytes(range(256))),
        ("jsonb", {"a": [1, 2.5, None, True], "nested": {"ü": "😀"}}),
        ("jsonb", [1, "two", {"three": 3}]),
        ("jsonb", []),
        ("jsonb", {}),
        ("timestamptz", dt.datetime(2026, 11, 21, 16, 2, 7, 123456, tzinfo=UTC)),
        ("timestamptz", dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))),
        ("timestamp", dt.datetime(2026, 1, 2, 3, 4, 5, 6)),
        ("date", dt.date(2026, 2, 28)),
        ("numeric", Decimal("12345678901234567890.000000001")),
        ("uuid", UUID("6c0d9b2e-7d6f-4b8a-9a3b-1f2e3d4c5b6a")),
        ("interval", dt.timedelta(days=3, seconds=7, microseconds=11)),
    ],
)
async def test_value_round_trips(store: Store, table: str, column_type: str, value: object) -> None:
    await store.execute(f"CREATE TABLE {table} (v {column_type})")
    assert await store.execute(f"INSERT INTO {table} (v) VALUES ($1)", value) == 1
    back = await store.fetchval(f"SELECT v FROM {table}")
    assert back == value
    assert type(back) is type(value)


async def test_null_round_trips(store: Store, table: str) -> None:
    await store.execute(f"CREATE TABLE {table} (a text, b bigint, c jsonb, d bytea, e timestamptz)")
    await store.execute(f"INSERT INTO {table} VALUES ($1, $2, $3, $4, $5)", None, None, None, None, None)
    assert await store.fetchrow(f"SELECT * FROM {table}") == dict.fromkeys("abcde")


async def test_nan_round_trips(store: Store, table: str) -> None:
    await store.execute(f"CREATE TABLE {table} (v double precision)")
    await store.execute(f"INSERT INTO {table} VALUES ($1)", math.nan)
    assert math.isnan(await store.fetchval(f"SELECT v FROM {table}"))


async def test_timestamps_come_back_aware(store: Store) -> None:
    now = await store.fetchval("SELECT now()")
    assert isinstance(now, dt.datetime)
    assert now.utcoffset() == dt.timedelta(0)


async def test_nul_in_text_is_refused_and_nothing_is_written(store: Store, table: str) -> None:
    await store.execute(f"CREATE TABLE {table} (v text)")
    with pytest.raises(InvalidParameter, match="NUL"):
        await store.execute(f"INSERT INTO {table} VALUES ($1)", "a\x00b")
    with pytest.raises(InvalidParameter, match=r"parameter \$2"):
        await store.execute_batch([(f"INSERT INTO {table} VALUES ($1)", ["ok"]), (f"INSERT INTO {table} VALUES ($1)", ["x"]), (f"INSERT INTO {table} VALUES ($1, $2)", ["ok", "\x00"])])
    assert await store.fetchval(f"SELECT count(*) FROM {table}") == 0


async def test_nul_inside_json_is_a_data_error(store: Store, table: str) -> None:
    await store.execute(f"CREATE TABLE {table} (v jsonb)")
    with pytest.raises(DataError) as caught:
        await store.execute(f"INSERT INTO {table} VALUES ($1)", {"k": "a\x00b"})
    assert caught.value.sqlstate == "22P05"


async def test_unsupported_parameter_type_is_refused(store: Store) -> None:
    with pytest.raises(InvalidParameter):
        await store.fetchval("SELECT $1", object())


async def test_out_of_range_int_is_a_data_error(store: Store, table: str) -> None:
    await store.execute(f"CREATE TABLE {table} (v bigint)")
    with pytest.raises(DataError) as caught:
        await store.execute(f"INSERT INTO {table} VALUES ($1)", 2**63)
    assert caught.value.sqlstate == "22003"


# jsonb keeps numbers as numeric, so a float written in exponent form (>= 1e16) reads back
# as an int on any PostgreSQL; JSON floats here stay below that.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(INT64_MIN, INT64_MAX) | st.floats(min_value=-1e15, max_value=1e15) | st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=8), children, max_size=4),
    max_leaves=12,
)
row_values = st.tuples(
    st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))),
    st.integers(INT64_MIN, INT64_MAX),
    st.floats(allow_nan=False),
    st.booleans(),
    st.binary(max_size=64),
    st.dictionaries(st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=8), json_values, max_size=4),
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(UTC)),
)


def test_property_values_round_trip(store: Store) -> None:
    """Any text, int64, float, bool, bytes, JSON document and timestamp comes back equal.

    Each example runs in its own `asyncio.run()`: the store serves event loops in turn.
    """
    table = "prop_values_" + store.backend
    asyncio.run(store.execute(f"DROP TABLE IF EXISTS {table}"))
    asyncio.run(store.execute(f"CREATE TABLE {table} (id bigserial, t text, i bigint, f double precision, b boolean, by bytea, j jsonb, ts timestamptz)"))

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(row_values)
    def check(values: tuple[object, ...]) -> None:
        async def round_trip() -> dict[str, object] | None:
            new_id = await store.fetchval(f"INSERT INTO {table} (t, i, f, b, by, j, ts) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id", *values)
            return await store.fetchrow(f"SELECT t, i, f, b, by, j, ts FROM {table} WHERE id = $1", new_id)

        row = asyncio.run(round_trip())
        assert row is not None
        assert tuple(row.values()) == values

    try:
        check()
    finally:
        asyncio.run(store.execute(f"DROP TABLE {table}"))
