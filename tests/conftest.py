"""Shared test setup: hypothesis profiles and skips for optional real tools."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import HealthCheck, settings

# Shared CI machines are small and noisy: never fail a property on how long it took.
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def require_binary(name: str) -> str:
    """Path of a real tool (redis-server, beanstalkd, …) or skip the test saying why."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (bash .ci/run installs it where apt exists)")
    return path


@pytest.fixture
def binary():
    return require_binary
