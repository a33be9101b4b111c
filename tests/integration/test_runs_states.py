"""The webhook's Prefect calls work in a process that never ran a flow."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

SET_A_STATE = """
import fanout.service.runs
from prefect.client.schemas.objects import State, StateType
from prefect.states import to_state_create
to_state_create(State(type=StateType.CANCELLED))
"""


def test_a_fresh_webhook_process_can_build_a_state_to_set() -> None:
    """Terminate and restart build Prefect states: with only `fanout.service.runs` imported, that works."""
    done = subprocess.run([sys.executable, "-c", SET_A_STATE], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
