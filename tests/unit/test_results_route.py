"""`GET /api/instances/{id}/results`: pages in item order over HTTP, behind the token; output inlined up to a limit."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from prefect.filesystems import LocalFileSystem

from fanout.api.results_routes import inline_limited
from fanout.core.settings import get_settings
from fanout.storage.checkpoints import CheckpointStore
from fanout.storage.instance_results import record_plan
from tests.support.fake_runs import FakeRuns
from tests.support.webhook_client import call, make_app

PROCESSOR = "fanout.engine.processor:processed"


def recorded_instance(results: Path, count: int, finished: int) -> None:
    """An instance `inst` of `count` items, the first `finished` of them checkpointed."""
    keys = [f"item-{index}" for index in range(1, count + 1)]
    record_plan(str(results.resolve()), "inst", PROCESSOR, keys)
    store = CheckpointStore(LocalFileSystem(basepath=str(results.resolve())), "inst", PROCESSOR)
    with store.journal("batch") as journal:
        for key in keys[:finished]:
            journal.append(key, f"Processed {key}")


def test_results_page_lists_items_in_order(clean_settings: Path) -> None:
    """A page gives index, key, status, result and error per item, and the next offset and URL."""
    recorded_instance(clean_settings, 5, 3)
    response = call(make_app(FakeRuns()), "GET", "/api/instances/inst/results?offset=2&limit=2")
    assert response.status_code == 200
    body = response.json()
    assert body["items"] == [
        {"index": 2, "key": "item-3", "status": "completed", "result": "Processed item-3", "error": None},
        {"index": 3, "key": "item-4", "status": "pending", "result": None, "error": None},
    ]
    assert body["next"] == 4 and body["nextUri"].endswith("/api/instances/inst/results?offset=4&limit=2")


def test_unknown_instance_is_404(clean_settings: Path) -> None:
    """An instance with no recorded results answers 404."""
    assert call(make_app(FakeRuns()), "GET", "/api/instances/ghost/results").status_code == 404


def test_bad_window_is_422(clean_settings: Path) -> None:
    """A negative offset or an oversized limit is refused."""
    recorded_instance(clean_settings, 2, 2)
    app = make_app(FakeRuns())
    assert call(app, "GET", "/api/instances/inst/results?offset=-1").status_code == 422
    assert call(app, "GET", "/api/instances/inst/results?limit=100000").status_code == 422


def test_results_need_the_token(clean_settings: Path) -> None:
    """Results are behind the webhook's bearer token."""
    recorded_instance(clean_settings, 2, 2)
    assert call(make_app(FakeRuns()), "GET", "/api/instances/inst/results", headers={}).status_code == 401


def request_for(base: str) -> Any:
    return SimpleNamespace(base_url=base)


def test_output_is_inlined_up_to_the_limit() -> None:
    """Up to FANOUT_OUTPUT_INLINE_LIMIT items the status document carries the output itself."""
    content = {"instanceId": "inst", "output": list(range(3))}
    assert inline_limited(dict(content), request_for("http://h/"), get_settings(output_inline_limit=3)) == content


def test_output_past_the_limit_points_at_the_results() -> None:
    """Past the limit `output` is null and `outputUri` names the results pages."""
    content = inline_limited(
        {"instanceId": "inst", "output": list(range(4))}, request_for("http://h/"), get_settings(output_inline_limit=3)
    )
    assert content["output"] is None
    assert content["outputUri"] == "http://h/api/instances/inst/results?offset=0&limit=100"
