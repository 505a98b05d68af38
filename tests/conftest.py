"""Shared fixtures: a lab state directory (made once per test run, copied per test) and helpers."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import pytest

from lab.state import StateDir


@pytest.fixture(scope="session")
def state_template(tmp_path_factory: pytest.TempPathFactory) -> StateDir:
    """Certificates take a while to make: make them once and copy the directory for each test."""
    state = StateDir(tmp_path_factory.mktemp("state-template"))
    state.create(datetime.datetime.now(datetime.UTC))
    return state


@pytest.fixture
def state(state_template: StateDir, tmp_path: Path) -> StateDir:
    copy = StateDir(tmp_path / "state")
    shutil.copytree(state_template.root, copy.root)
    return copy
