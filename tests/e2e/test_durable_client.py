"""The real `azure-functions-durable` client drives fanout's Durable Functions routes on a real stack.

The client is built the way an Azure Functions host builds it, from a binding
JSON, and is given only its `rpcBaseUrl`: the webhook's base URL with the token
as the URL's password (aiohttp sends it as Basic auth). Each management method
gets the answer the client documents.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import azure.functions as func
import pytest
from azure.durable_functions import DurableOrchestrationClient, OrchestrationRuntimeStatus
from azure.durable_functions.models.utils import http_utils

from fanout.localstack.processes import LOOPBACK
from fanout.localstack.stack import LocalStack
from tests.e2e.test_readme_commands import bash
from tests.support.markdown import DOCS, section_blocks
from tests.support.processors import executed as executed_items
from tests.support.stacks import SLOW_SCRIPTED, wait_for

pytestmark = pytest.mark.e2e

T = TypeVar("T")
SEED_OUTPUT = [f"Processed item-{i}" for i in range(1, 6)]
Status = OrchestrationRuntimeStatus


def rpc_base_url(stack: LocalStack) -> str:
    """The only setting the client needs: the durabletask base URL, with the token as its password."""
    return f"http://fanout:{stack.token}@{LOOPBACK}:{stack.webhook_port}/runtime/webhooks/durabletask/"


def binding(stack: LocalStack) -> str:
    """The client binding JSON a Functions host would pass; the management URLs carry `code=`."""
    status = f"{stack.webhook_url}/runtime/webhooks/durabletask/instances/INSTANCEID"
    code = f"code={stack.token}"
    return json.dumps(
        {
            "taskHubName": "fanout",
            "creationUrls": {},
            "managementUrls": {
                "id": "INSTANCEID",
                "statusQueryGetUri": f"{status}?{code}",
                "sendEventPostUri": f"{status}/raiseEvent/{{eventName}}?{code}",
                "terminatePostUri": f"{status}/terminate?reason={{text}}&{code}",
                "purgeHistoryDeleteUri": f"{status}?{code}",
            },
            "rpcBaseUrl": rpc_base_url(stack),
        }
    )


@pytest.fixture
def client(stack: LocalStack) -> Iterator[DurableOrchestrationClient]:
    yield DurableOrchestrationClient(binding(stack))


def run(call: Callable[[], Awaitable[T]]) -> T:
    """Run one client call in a fresh event loop; the client's shared aiohttp session is closed after it."""

    async def main() -> T:
        try:
            return await call()
        finally:
            await http_utils._close_session()  # its module-level session belongs to this loop

    return asyncio.run(main())


def run_retrying_503(call: Callable[[], Awaitable[T]], attempts: int = 3) -> T:
    """`run`, again after a 503: the webhook answers 503 + Retry-After when the Prefect API fails or is slow
    (seen once, on a resume right after the suspend, on a loaded 2-core machine), and this client cannot
    read Retry-After, so its caller retries."""
    for _ in range(attempts - 1):
        try:
            return run(call)
        except Exception as error:  # the client raises a bare Exception naming the status code
            if "status code 503" not in str(error):
                raise
    return run(call)


def start(client: DurableOrchestrationClient, body: Any = None, instance_id: str | None = None) -> str:
    return run(lambda: client.start_new("fan_out_fan_in", instance_id, body))


def status_of(client: DurableOrchestrationClient, instance_id: str) -> Any:
    return run(lambda: client.get_status(instance_id))


def wait_status(client: DurableOrchestrationClient, instance_id: str, *wanted: Status, timeout: float = 180) -> Any:
    """Poll get_status until the instance reports one of `wanted`."""

    def reached() -> Any:
        status = status_of(client, instance_id)
        return status if status.runtime_status in wanted else None

    return wait_for(reached, timeout=timeout, interval=0.25, what=f"{instance_id} to be {wanted}")


def items(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{index}" for index in range(1, count + 1)]


def test_start_new_runs_the_seed_and_get_status_shows_input_and_history(
    client: DurableOrchestrationClient, worker: Any
) -> None:
    """start_new answers the id; get_status with history and input shows the five results, item by item."""
    instance_id = start(client)
    wait_status(client, instance_id, Status.Completed)
    status = run(lambda: client.get_status(instance_id, show_history=True, show_history_output=True, show_input=True))
    assert status.output == SEED_OUTPUT
    assert status.input_ == {"instance_id": instance_id}
    tasks = [event for event in status.history if event["EventType"] == "TaskCompleted"]
    assert [(event["Name"], event["Result"]) for event in tasks] == list(
        zip(items("item", 5), SEED_OUTPUT, strict=True)
    )
    assert status.history[-1]["OrchestrationStatus"] == "Completed"


def test_start_new_of_an_unknown_orchestrator_raises_the_servers_message(client: DurableOrchestrationClient) -> None:
    """An orchestrator fanout does not have: the client raises the 400's ExceptionMessage."""
    with pytest.raises(Exception, match="HelloCities"):
        run(lambda: client.start_new("HelloCities", None, None))


def test_get_status_all_and_get_status_by_list_the_instances(client: DurableOrchestrationClient, worker: Any) -> None:
    """get_status_all lists every instance; get_status_by filters by creation time and runtime status."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    prefix = f"list-{uuid.uuid4().hex[:8]}"
    ids = [start(client, {"count": 2}, f"{prefix}-{n}") for n in (1, 2)]
    for instance_id in ids:
        wait_status(client, instance_id, Status.Completed)
    assert set(ids) <= {status.instance_id for status in run(client.get_status_all)}
    completed = run(lambda: client.get_status_by(created_time_from=since, runtime_status=[Status.Completed]))
    assert set(ids) <= {status.instance_id for status in completed}
    failed = run(lambda: client.get_status_by(created_time_from=since, runtime_status=[Status.Failed]))
    assert not set(ids) & {status.instance_id for status in failed}
    prefixed = run(lambda: client.get_status_by(instance_id_prefix=prefix))
    assert sorted(status.instance_id for status in prefixed) == ids


def test_terminate_stops_a_running_instance(
    client: DurableOrchestrationClient, pooled_worker: Any, execution_log: Path
) -> None:
    """terminate ends a running instance as Terminated; terminating it again raises nothing (410)."""
    pooled_worker(**SLOW_SCRIPTED)
    instance_id = start(client, {"items": items("stop", 20)})
    wait_status(client, instance_id, Status.Running)
    run(lambda: client.terminate(instance_id, "enough"))
    wait_status(client, instance_id, Status.Terminated)
    run(lambda: client.terminate(instance_id, "again"))


def test_suspend_holds_new_items_and_resume_continues_from_the_checkpoints(
    client: DurableOrchestrationClient, pooled_worker: Any, execution_log: Path
) -> None:
    """suspend → Suspended, no item completes the run while suspended; resume → Completed, each item run once
    or (in flight at the suspend) twice."""
    pooled_worker(**SLOW_SCRIPTED)
    names = items("nap", 16)
    instance_id = start(client, {"items": names})
    wait_for(lambda: len(executed_items(execution_log)) >= 2, what="two items to start")
    run_retrying_503(lambda: client.suspend(instance_id, "lunch"))
    assert status_of(client, instance_id).runtime_status == Status.Suspended
    held = len(executed_items(execution_log))
    assert held < len(names)
    run_retrying_503(lambda: client.resume(instance_id, "back"))
    done = wait_status(client, instance_id, Status.Completed)
    assert done.output == [f"Processed {name}" for name in names]
    executed = executed_items(execution_log)
    assert set(executed) == set(names)
    assert len(executed) <= len(names) + 1  # at most the item in flight at the suspend runs again


def test_restart_with_a_new_id_and_with_the_same_id(client: DurableOrchestrationClient, worker: Any) -> None:
    """restart answers a new instance id by default, and the same id with restart_with_new_instance_id=False."""
    instance_id = start(client, {"count": 2})
    wait_status(client, instance_id, Status.Completed)
    new_id = run(lambda: client.restart(instance_id))
    assert new_id != instance_id
    assert wait_status(client, new_id, Status.Completed).input_ == {"count": 2, "instance_id": new_id}
    assert run(lambda: client.restart(instance_id, restart_with_new_instance_id=False)) == instance_id
    assert wait_status(client, instance_id, Status.Completed).output == ["Processed item-1", "Processed item-2"]


def test_rewind_runs_only_the_failed_items_again(
    client: DurableOrchestrationClient, pooled_worker: Any, execution_log: Path
) -> None:
    """A Failed instance rewound: only its failed item runs again, and it Completes."""
    pooled_worker(**SLOW_SCRIPTED)
    instance_id = start(client, {"items": items("rw", 3)})
    wait_status(client, instance_id, Status.Failed)
    run(lambda: client.rewind(instance_id, "fixed"))
    assert wait_status(client, instance_id, Status.Completed).output == [
        "Processed rw-1",
        "Processed rw-2",
        "Processed rw-3",
    ]
    assert executed_items(execution_log) == ["rw-1", "rw-2", "rw-2", "rw-3"]
    with pytest.raises(Exception, match="only supported on failed"):
        run(lambda: client.rewind(instance_id, "again"))


def test_purge_instance_history_deletes_a_finished_instance(client: DurableOrchestrationClient, worker: Any) -> None:
    """purge_instance_history deletes one finished instance; get_status then finds nothing; unknown ids purge 0."""
    instance_id = start(client, {"count": 1})
    wait_status(client, instance_id, Status.Completed)
    assert run(lambda: client.purge_instance_history(instance_id)).instances_deleted == 1
    assert not status_of(client, instance_id)
    assert run(lambda: client.purge_instance_history("no-such-instance")).instances_deleted == 0


def test_purge_instance_history_by_deletes_the_matching_instances(
    client: DurableOrchestrationClient, worker: Any
) -> None:
    """purge_instance_history_by deletes the finished instances created since a time, with a status listed."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    ids = [start(client, {"count": 1}) for _ in range(2)]
    for instance_id in ids:
        wait_status(client, instance_id, Status.Completed)
    result = run(lambda: client.purge_instance_history_by(created_time_from=since, runtime_status=[Status.Completed]))
    assert result.instances_deleted >= 2
    assert not any(status_of(client, instance_id) for instance_id in ids)


def test_raise_event_is_accepted_while_running_and_gone_after(
    client: DurableOrchestrationClient, pooled_worker: Any, execution_log: Path
) -> None:
    """raise_event on a running instance raises nothing (accepted, discarded); on a finished one it says gone."""
    pooled_worker(**SLOW_SCRIPTED)
    instance_id = start(client, {"items": items("ev", 3)})
    run(lambda: client.raise_event(instance_id, "Approval", {"ok": True}))
    wait_status(client, instance_id, Status.Completed)
    with pytest.raises(Exception, match="is gone"):
        run(lambda: client.raise_event(instance_id, "Approval", {"ok": True}))


def test_wait_for_completion_answers_the_output_or_the_check_status_response(
    client: DurableOrchestrationClient, pooled_worker: Any, execution_log: Path
) -> None:
    """wait_for_completion_or_create_check_status_response: 200 with the output once done, 202 with links before."""
    pooled_worker(**SLOW_SCRIPTED)  # three items one at a time: done no sooner than 1.5 s after start
    request = func.HttpRequest(method="GET", url="http://functions.test/api/start", body=b"")
    slow = start(client, {"items": items("slow", 3)})
    pending = run(lambda: client.wait_for_completion_or_create_check_status_response(request, slow, 1000, 500))
    assert pending.status_code == 202
    assert json.loads(pending.get_body())["id"] == slow
    done = run(lambda: client.wait_for_completion_or_create_check_status_response(request, slow, 120_000, 1000))
    assert (done.status_code, json.loads(done.get_body())) == (
        200,
        ["Processed slow-1", "Processed slow-2", "Processed slow-3"],
    )


def test_the_client_without_the_token_is_refused(stack: LocalStack) -> None:
    """Nothing is anonymous: a client whose base URL carries no token gets no status (401 is unexpected to it)."""
    anonymous = json.loads(binding(stack)) | {"rpcBaseUrl": f"{stack.webhook_url}/runtime/webhooks/durabletask/"}
    client = DurableOrchestrationClient(json.dumps(anonymous))
    with pytest.raises(Exception, match="401"):
        run(lambda: client.get_status("anything"))


def test_the_guide_curl_commands_answer_as_the_guide_says(stack: LocalStack, worker: Any) -> None:
    """The Durable Functions guide's curl lines, run as written: start under an id, status with history, a page."""
    (script,) = section_blocks(DOCS / "how-to" / "durable-functions.md", "With curl")
    done = bash(script, stack, FANOUT_URL=stack.webhook_url, FANOUT_WEBHOOK_TOKEN=stack.token)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"id":"dfdemo-1"' in done.stdout
    assert '"instanceId":"dfdemo-1"' in done.stdout and '"history":[' in done.stdout
    assert "HTTP/1.1 200" in done.stdout
