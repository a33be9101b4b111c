"""When a seed run's status URL answers 200, against when Prefect stamped and recorded its Completed state.

    .venv/bin/python -m benchmarks.status_flip [--runs 6] [--interval 0.005] [--gap 3] [--held]

On a `fanout up`-like stack with one warm worker, each run is started with POST /api/start-fanout and its
status URL polled every `--interval` seconds, far faster than a client would, so the time the status
first answers 200 shows what the server and the webhook add after the run's end rather than the
client's polling. Per run it prints, in seconds after the POST: each Prefect state's timestamp (as the
engine stamped it), the flow run's last update (about when the server recorded the final state), and the
first status answer of each kind. With `--held`, one status GET held with `?wait=` instead of the polling.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from typing import Any

import httpx

from fanout.localstack.stack import temporary_stack
from fanout.service.runs import instance_tag


def seconds_since(moment: str, start: float) -> float:
    """An ISO timestamp from Prefect's API, in seconds after `start` (a `time.time()`)."""
    return round(datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp() - start, 3)


def first_answers(client: httpx.Client, status_url: str, start: float, interval: float) -> dict[str, float]:
    """The moment each (HTTP status, runtimeStatus) first answered, polling until 200."""
    seen: dict[str, float] = {}
    while True:
        response = client.get(status_url)
        seen.setdefault(f"{response.status_code} {response.json().get('runtimeStatus')}", round(time.time() - start, 3))
        if response.status_code == 200:
            return seen
        time.sleep(interval)


def held_answer(client: httpx.Client, status_url: str, start: float) -> dict[str, float]:
    """The moment a status GET held with `?wait=` answered 200 (asking again on a 202)."""
    response = client.get(status_url, params={"wait": 30})
    while response.status_code != 200:
        response = client.get(response.headers["location"])
    return {f"200 held {response.json().get('runtimeStatus')}": round(time.time() - start, 3)}


def prefect_marks(api: httpx.Client, instance_id: str, start: float) -> dict[str, float]:
    """The run's state timestamps and its last update, from Prefect's API."""
    query = {"flow_runs": {"tags": {"all_": [instance_tag(instance_id)]}}}
    flow_run: dict[str, Any] = api.post("/flow_runs/filter", json=query).json()[0]
    states = api.get("/flow_run_states/", params={"flow_run_id": flow_run["id"]}).json()
    marks = {state["type"]: seconds_since(state["timestamp"], start) for state in states}
    marks["updated"] = seconds_since(flow_run["updated"], start)
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--interval", type=float, default=0.005, help="seconds between status reads")
    parser.add_argument("--held", action="store_true", help="one status GET held with ?wait= instead of polling")
    parser.add_argument("--gap", type=float, default=3.0, help="seconds before each run (its worker idle)")
    args = parser.parse_args()
    with temporary_stack("fanout-status-flip-") as stack:
        worker = stack.start_worker(env={})
        try:
            with (
                httpx.Client(base_url=stack.webhook_url, headers=stack.webhook_headers, timeout=60) as client,
                httpx.Client(base_url=stack.api_url, headers=stack.api_headers(), timeout=60) as api,
            ):
                for number in range(1, args.runs + 1):
                    time.sleep(args.gap)
                    start = time.time()
                    started = client.post("/api/start-fanout", json={"count": 5}).json()
                    status_url = started["statusQueryGetUri"]
                    if args.held:
                        answers = held_answer(client, status_url, start)
                    else:
                        answers = first_answers(client, status_url, start, args.interval)
                    print(f"run {number}: prefect {prefect_marks(api, started['id'], start)} status {answers}")
        finally:
            stack.stop_worker(worker)


if __name__ == "__main__":
    main()
