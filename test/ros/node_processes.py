"""Helpers of the tests that run the node as a process of its own (fixtures in conftest.py use them too)."""

from __future__ import annotations

import os
import time
from pathlib import Path

PROFILE = Path(__file__).resolve().parents[2] / "config" / "fastdds_shm.xml"


def wait_for(cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not cond():
        time.sleep(0.05)
    return cond()


def node_env(domain_id: int) -> dict:
    """The environment of a node process: this test's domain and the shipped Fast DDS profile."""
    return dict(os.environ, ROS_DOMAIN_ID=str(domain_id), FASTDDS_DEFAULT_PROFILES_FILE=str(PROFILE),
                FASTRTPS_DEFAULT_PROFILES_FILE=str(PROFILE), PYTHONUNBUFFERED="1")

