"""Fixtures of the operator-side tests: a real CEIR in a child process on a
SQLite file (so that tests can kill it), its organisations and tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from operators_sim.embedded import EmbeddedCeir


@pytest.fixture
def ceir_process(tmp_path: Path) -> Iterator[EmbeddedCeir]:
    ceir = EmbeddedCeir(tmp_path / "ceir")
    ceir.start()
    yield ceir
    ceir.stop()


@pytest.fixture
def sim_tokens(ceir_process: EmbeddedCeir) -> dict[str, str]:
    return ceir_process.create_organisations()
