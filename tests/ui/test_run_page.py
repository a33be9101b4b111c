"""The Prefect UI page of a finished fanout run, as a person sees it in a real browser."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fanout.localstack.processes import PrefectServer
from tests.support.paths import SCREENSHOTS

pytestmark = [pytest.mark.e2e, pytest.mark.ui]

ITEMS = [f"item-{i}" for i in range(1, 6)]


@pytest.fixture
def run_page(browser: Any, prefect_server: PrefectServer, finished_run: dict[str, Any]) -> Iterator[Any]:
    """The run's page (`/runs/flow-run/<id>`) once its header shows it Completed."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{prefect_server.ui_url}/runs/flow-run/{finished_run['id']}")
        page.get_by_text(finished_run["name"], exact=True).first.wait_for(timeout=60_000)
        page.get_by_text("Completed", exact=True).first.wait_for(timeout=30_000)
        yield page
    finally:
        page.close()


def open_tab(page: Any, name: str) -> None:
    page.locator("li.p-tab", has_text=name).first.click()


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_task_runs_are_named_by_item(run_page: Any) -> None:
    """The Task Runs tab lists `process_item-item-1` .. `process_item-item-5`, all Completed."""
    open_tab(run_page, "Task Runs")
    for item in ITEMS:
        run_page.get_by_text(f"process_item-{item}", exact=True).first.wait_for(timeout=30_000)
    run_page.get_by_text("(5 Completed)").first.wait_for(timeout=10_000)
    screenshot(run_page, "run-page-task-runs")


def test_logs_carry_correlation_ids(run_page: Any) -> None:
    """The Logs tab shows the processor's lines tagged `[ui-seed/item-3]`, twice for the retried item."""
    open_tab(run_page, "Logs")
    lines = run_page.get_by_text("[ui-seed/item-3] working on it", exact=True)
    lines.first.wait_for(timeout=30_000)
    assert lines.count() == 2
    run_page.get_by_text("[ui-seed/item-3] Finished in state Completed()", exact=True).first.wait_for(timeout=10_000)
    screenshot(run_page, "run-page-logs")


def test_artifacts_are_on_the_page(run_page: Any) -> None:
    """The Artifacts tab shows the progress and item table artifacts with the run's summary."""
    open_tab(run_page, "Artifacts")
    run_page.get_by_text("fanout-progress", exact=True).first.wait_for(timeout=30_000)
    run_page.get_by_text("5 of 5 items done, 0 failed").first.wait_for(timeout=10_000)
    run_page.get_by_text("fanout-run-ui-seed-items", exact=True).first.wait_for(timeout=30_000)
    run_page.get_by_text("5 items: 5 succeeded (0 from checkpoints), 0 failed, 1 retried").first.wait_for(
        timeout=10_000
    )
    screenshot(run_page, "run-page-artifacts")


def test_item_table_shows_attempts_and_correlation_ids(run_page: Any) -> None:
    """Opening the table artifact shows one row per item with its correlation id."""
    open_tab(run_page, "Artifacts")
    run_page.get_by_text("fanout-run-ui-seed-items", exact=True).first.click()
    for item in ITEMS:
        run_page.get_by_text(f"ui-seed/{item}", exact=True).first.wait_for(timeout=30_000)
    run_page.get_by_text("correlation_id", exact=True).first.wait_for(timeout=10_000)
    screenshot(run_page, "item-table-artifact")


def test_item_table_renders_the_metrics(run_page: Any) -> None:
    """Opening the item table shows the metrics above it: items, retried and the p50/p95 durations."""
    open_tab(run_page, "Artifacts")
    run_page.get_by_text("fanout-run-ui-seed-items", exact=True).first.click()
    for label in ("items", "succeeded", "failed", "retried", "p50 item duration", "p95 item duration", "items/s"):
        run_page.get_by_text(label, exact=True).first.wait_for(timeout=30_000)
    screenshot(run_page, "metrics-artifact")
