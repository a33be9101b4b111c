"""The rest of a run on threads whose items compute: a core's worth of threads when the processor or the work
does not allow worker processes."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from unittest.mock import MagicMock, patch

import pytest

from fanout.core.outcome import ItemOutcome
from fanout.core.settings import FanoutSettings
from fanout.engine.cpu_bound import CpuBoundRest, CpuShare, cpu_bound
from fanout.engine.item_path import ItemRun
from fanout.engine.item_processes import current_processes


def settings(**values: object) -> FanoutSettings:
    values = {"processes": 2, "max_parallel": 8, **values}
    return FanoutSettings(_env_file=None, **values)  # type: ignore[arg-type]


def item_run(tmp_path: Path, **changes: object) -> ItemRun:
    run = ItemRun.for_run("cpu", settings(result_storage=str(tmp_path)))
    return dataclasses.replace(run, **changes)  # type: ignore[arg-type]


def paced(seconds: float, count: int = 4) -> list[ItemOutcome]:
    return [ItemOutcome(item=f"item-{i}", value=i, attempts=1, duration=seconds) for i in range(count)]


def twice(item: str) -> str:
    return item * 2


@pytest.fixture
def logged() -> Iterator[MagicMock]:
    """The run logger's info lines."""
    with patch("fanout.engine.cpu_bound.get_run_logger") as logger:
        yield logger.return_value.info


def decide(rest_settings: FanoutSettings, run: ItemRun, outcomes: list[ItemOutcome], remaining: int) -> bool:
    """Whether the rest went to worker processes (they are stopped again before returning). Starting them
    forks, so unit tests show only the rests that stay; tests/integration/test_cpu_bound_rest.py the move."""
    with ExitStack() as stack:
        window = CpuBoundRest(rest_settings, run, stack).window(0.95, outcomes, remaining)
        moved = current_processes() is not None
    assert window == 2
    return moved


def test_a_computing_process_reads_as_computing_and_a_waiting_one_as_idle() -> None:
    """A busy loop wants a whole core (running, or waiting for one on a crowded machine); a sleep almost none."""
    busy = CpuShare()
    until = time.perf_counter() + 0.2
    while time.perf_counter() < until:
        pass
    computing = busy.share()
    idle = CpuShare()
    time.sleep(0.2)
    assert computing > 0.8 and idle.share() < 0.3


def spin(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def measured_while_alive(share: CpuShare, *targets: Callable[[], None]) -> float:
    """`share` read once every target ran, while their threads still live (the kernel forgets an ended thread)."""
    ran = threading.Semaphore(0)
    measured = threading.Event()

    def then_wait(target: Callable[[], None]) -> None:
        target()
        ran.release()
        measured.wait()

    threads = [threading.Thread(target=then_wait, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for _ in threads:
        ran.acquire()
    value = share.share()
    measured.set()
    for thread in threads:
        thread.join()
    return value


def test_only_the_item_threads_count_towards_the_share() -> None:
    """A thread that computes but runs no items leaves sleeping items idle; the process as a whole reads busy."""
    item_threads: list[int] = []

    def sleeping_item() -> None:
        item_threads.append(threading.get_native_id())
        time.sleep(0.5)

    items = measured_while_alive(CpuShare(threads=lambda: item_threads), sleeping_item, lambda: spin(0.5))
    whole = measured_while_alive(CpuShare(), sleeping_item, lambda: spin(0.5))
    assert items < 0.3 and whole > 0.5


def test_an_item_thread_that_computes_reads_as_computing() -> None:
    """The item thread's own busy loop is what the share sees."""
    item_threads: list[int] = []

    def computing_item() -> None:
        item_threads.append(threading.get_native_id())
        spin(0.5)

    assert measured_while_alive(CpuShare(threads=lambda: item_threads), computing_item) > 0.5


def test_items_that_keep_the_flow_computing_on_threads_are_cpu_bound() -> None:
    """A busy flow process on threads is CPU-bound; a mostly idle one, or one on Dask, is not."""
    assert cpu_bound(settings(), share=0.95)
    assert not cpu_bound(settings(), share=0.2)
    assert not cpu_bound(settings(task_runner="dask"), share=0.95)


def test_as_many_threads_as_cores_are_not_capped_further() -> None:
    """With no more threads than cores, there is nothing to cap or move."""
    assert not cpu_bound(settings(max_parallel=2), share=0.95)


def test_the_setting_off_keeps_the_rest_on_threads(tmp_path: Path, logged: MagicMock) -> None:
    """`FANOUT_CPU_BOUND_PROCESSES=false`: a core's worth of threads, and the log names the setting."""
    run = item_run(tmp_path, function=twice)
    assert not decide(settings(cpu_bound_processes=False), run, paced(0.025), remaining=400)
    assert "FANOUT_CPU_BOUND_PROCESSES=false" in logged.call_args.args


def test_short_items_stay_on_threads_without_a_word(tmp_path: Path, logged: MagicMock) -> None:
    """Items of microseconds are not worth a worker process, however many, nor a line in the run's log."""
    assert not decide(settings(), item_run(tmp_path, function=twice), paced(0.000_01), remaining=1_000_000)
    logged.assert_not_called()


def test_a_short_rest_stays_on_threads(tmp_path: Path, logged: MagicMock) -> None:
    """Ten items of 25 ms left are less work than starting worker processes."""
    assert not decide(settings(), item_run(tmp_path, function=twice), paced(0.025), remaining=10)
    logged.assert_not_called()


def test_a_processor_that_cannot_be_pickled_stays_on_threads(tmp_path: Path, logged: MagicMock) -> None:
    """A lambda cannot reach a worker process: the rest stays on threads, and the log says why."""
    run = item_run(tmp_path, function=lambda item: item)
    assert not decide(settings(), run, paced(0.025), remaining=400)
    assert "cannot be pickled" in str(logged.call_args.args)


def test_an_async_processor_stays_on_threads(tmp_path: Path, logged: MagicMock) -> None:
    """An async processor runs on an event loop, never in worker processes."""

    async def waiting(item: str) -> str:
        return item

    assert not decide(settings(), item_run(tmp_path, function=waiting), paced(0.025), remaining=400)
