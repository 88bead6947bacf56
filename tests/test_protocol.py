"""Framing: frames split and joined at arbitrary byte boundaries decode to the same messages,
in Python's reader and in the real sidecar's."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timestep.store import protocol
from timestep.store.adapt import dump_params
from timestep.store.node import find_node, sidecar_dir
from timestep.store.template import ensure_memory_template

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)
replies = st.one_of(
    st.builds(protocol.Result, id=st.integers(0, 2**31), names=st.lists(texts, max_size=3), types=st.lists(st.integers(0, 2**31), max_size=3), rows=st.lists(st.lists(st.none() | texts, max_size=3), max_size=5), affected=st.integers(0, 2**40)),
    st.builds(protocol.Error, id=st.integers(0, 2**31), code=st.sampled_from(["23505", "42601", "startup"]), message=texts, detail=st.none() | texts),
    st.builds(protocol.BatchResult, id=st.integers(0, 2**31), affected=st.lists(st.integers(0, 2**40))),
    st.builds(protocol.Closed, id=st.integers(0, 2**31)),
)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    pieces, last = [], 0
    for point in points + [len(data)]:
        pieces.append(data[last:point])
        last = point
    return pieces


@settings(max_examples=300, deadline=None)
@given(st.lists(replies, min_size=1, max_size=8), st.lists(st.integers(0, 5000), max_size=20))
def test_reader_reassembles_any_split(messages: list[protocol.Reply], cuts: list[int]) -> None:
    stream = b"".join(protocol.encode_frame(m) for m in messages)
    reader = protocol.FrameReader()
    bodies: list[bytes] = []
    for piece in split_at(stream, cuts):
        bodies.extend(reader.feed(piece))
    assert [protocol.decode_reply(b) for b in bodies] == messages
    assert reader.pending == 0


def test_oversized_frame_is_refused() -> None:
    reader = protocol.FrameReader()
    try:
        reader.feed(protocol.HEADER.pack(protocol.MAX_FRAME + 1))
    except ValueError as exc:
        assert "exceeds" in str(exc)
    else:
        raise AssertionError("an oversized frame was accepted")


@pytest.fixture(scope="module")
def raw_sidecar() -> Iterator[subprocess.Popen[bytes]]:
    """A real sidecar on an in-memory database, spoken to frame by frame."""
    template = asyncio.run(ensure_memory_template())  # what open_store("memory://") loads
    child = subprocess.Popen([find_node(), str(sidecar_dir() / "server.mjs"), "--memory", "--template", str(template)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert isinstance(read_replies(child, protocol.FrameReader(), 1)[0], protocol.Ready)
    yield child
    assert child.stdin is not None
    child.stdin.close()
    assert child.wait(timeout=30) == 0


def read_replies(child: subprocess.Popen[bytes], reader: protocol.FrameReader, count: int) -> list[protocol.Reply]:
    assert child.stdout is not None
    replies: list[protocol.Reply] = []
    while len(replies) < count:
        data = os.read(child.stdout.fileno(), 1 << 16)
        assert data, "the sidecar closed its output"
        replies.extend(protocol.decode_reply(b) for b in reader.feed(data))
    return replies


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(texts, min_size=1, max_size=12), st.lists(st.integers(1, 400), min_size=1, max_size=40))
def test_sidecar_reassembles_any_split(raw_sidecar: subprocess.Popen[bytes], values: list[str], cuts: list[int]) -> None:
    """The real sidecar answers frames written to it in arbitrary pieces, in order."""
    values = [v.replace("\x00", "") for v in values]
    frames = []
    for i, value in enumerate(values, start=1):
        params, types = dump_params([value])
        frames.append(protocol.encode_frame(protocol.Query(id=i, sql="SELECT $1::text AS v", params=params, types=types)))
    stream = b"".join(frames)
    assert raw_sidecar.stdin is not None
    position = 0
    for size in cuts * (len(stream) // sum(cuts) + 1):
        piece = stream[position : position + size]
        if not piece:
            break
        raw_sidecar.stdin.write(piece)
        raw_sidecar.stdin.flush()
        position += size
    replies = read_replies(raw_sidecar, protocol.FrameReader(), len(values))
    assert all(isinstance(r, protocol.Result) for r in replies)
    assert [r.id for r in replies] == list(range(1, len(values) + 1))
    assert [r.rows[0][0] for r in replies] == values  # type: ignore[union-attr]
