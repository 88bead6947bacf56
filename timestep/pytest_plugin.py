"""pytest plugin (registered by timestep's `pytest11` entry point): the `fake_model_server` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .testing import FakeModelServer


@pytest.fixture
def fake_model_server() -> Iterator[FakeModelServer]:
    """A started `FakeModelServer` with an empty script: `fake_model_server.add(text("hi"))`."""
    with FakeModelServer() as server:
        yield server
