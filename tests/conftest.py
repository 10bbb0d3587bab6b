"""Shared fixtures: the asset library (decoded once per machine), one local Ray instance per session, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def assets():
    from collage.assets import AssetLibrary

    return AssetLibrary(warn=False)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for every in-process test that needs it (starting Ray costs seconds)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # stay on loopback
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def cli_env() -> dict:
    env = dict(os.environ)
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    env.pop("RAY_ADDRESS", None)
    return env


def run_cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `collage ARGS` as a user would, in a fresh process."""
    return subprocess.run([sys.executable, "-m", "collage", *args], capture_output=True, text=True, timeout=timeout,
                          env=env or cli_env(), cwd=REPO)
