"""Shared fixtures: paths to the captured vectors (copied from the spec into tests/data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

VECTORS = Path(__file__).parent / "data" / "vectors"


def read_vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def load_json(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


@pytest.fixture(scope="session")
def wire_meta() -> Any:
    return load_json("wire_vectors.json")
