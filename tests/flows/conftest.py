"""The flow tests' fixtures: one temporary Prefect server for the session, the demo world and its web."""

import os
import sys
from pathlib import Path

import pytest

# No telemetry from the test servers: traffic stays on 127.0.0.1.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")  # Prefect's client-side analytics


@pytest.fixture(scope="session")
def prefect_api():
    """One temporary Prefect server for the whole session (15-30 s to start); yields its API URL."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield PREFECT_API_URL.value()


# tests/flows/flowkit.py: helpers the flow test modules import (`from flowkit import ...`)
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The demo's two Reddit months (dump files) and their small web (plain HTTP on 127.0.0.1)."""
    from flows.demo import DemoWorld

    w = DemoWorld()
    d = tmp_path_factory.mktemp("dumps")
    return w, w.write_dumps(d)


@pytest.fixture(scope="module")
def web(world):
    from flows.demo import DemoWeb

    with DemoWeb(world[0]) as web:
        yield web


@pytest.fixture(scope="module")
def cfg(world, web):
    from flows.demo import demo_config

    return demo_config(world[0], web.address)
