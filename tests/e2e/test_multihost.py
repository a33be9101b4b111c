"""A rehearsed multi-host run (tests/support/multihost.py): Prefect on PostgreSQL, Dask workers, checkpoints on S3."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.multihost import Hosts, Rehearsal, multihost, rehearse

pytest.importorskip("prefect_dask", reason="the dask extra is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    """The fleet on this machine; stopped at the end, whatever happened."""
    with multihost(tmp_path_factory.mktemp("multihost")) as started:
        yield started


@pytest.fixture(scope="module")
def rehearsal(hosts: Hosts) -> Rehearsal:
    """20,000 items; a Dask host SIGKILLed at a third, the Prefect worker and flow process at two thirds."""
    seen = rehearse(hosts, count=20_000)
    print(seen.summary())
    return seen


def test_the_run_survives_a_dead_dask_host_and_a_dead_prefect_worker(rehearsal: Rehearsal) -> None:
    """The same flow run completes with every item's result, in order, read from S3."""
    assert rehearsal.state == "COMPLETED", rehearsal.history
    assert rehearsal.output_right
    assert set(rehearsal.executions) == {f"item-{index}" for index in range(1, rehearsal.count + 1)}


def test_only_items_without_a_checkpoint_ran_again(rehearsal: Rehearsal) -> None:
    """No item whose checkpoint was on S3 before a kill ran again; those that did were in flight (a few batches)."""
    assert rehearsal.rerun_after_checkpoint == []
    assert len(rehearsal.ran_twice) < rehearsal.count // 10


def test_the_same_run_resumed_from_the_s3_checkpoints(rehearsal: Rehearsal) -> None:
    """The crashed flow run was retried (run count 2) and found at least half the items checkpointed on S3."""
    assert rehearsal.run_count >= 2, rehearsal.history
    assert len(rehearsal.checkpointed_before_flow_kill) >= rehearsal.count // 2
