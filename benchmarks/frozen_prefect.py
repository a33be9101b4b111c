"""How long the webhook takes to answer while its Prefect server is frozen (SIGSTOP), side by side with it running.

    .venv/bin/python -m benchmarks.frozen_prefect [--repeat 3]

Starts a Prefect server (SQLite) and the webhook under uvicorn in a temporary
folder, then times `/health` and a status GET (`/api/instances/<id>`) first with
the server running, then with its process group stopped by SIGSTOP (resumed with
SIGCONT before everything is stopped), and prints each answer's status code and
seconds. The webhook's defaults are used: FANOUT_WEBHOOK_HEALTH_TIMEOUT_SECONDS
and FANOUT_WEBHOOK_READ_DEADLINE_SECONDS bound the frozen case.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from pathlib import Path

import httpx

from fanout.localstack.stack import LocalStack


def timed(client: httpx.Client, path: str) -> tuple[int | str, float]:
    """The answer's status code (or the client-side error) and the seconds it took."""
    started = time.perf_counter()
    try:
        code: int | str = client.get(path).status_code
    except httpx.HTTPError as error:
        code = type(error).__name__
    return code, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        env = {name: value for name, value in os.environ.items() if not name.startswith("FANOUT_")}
        stack = LocalStack(home=Path(folder), env={**env, "FANOUT_RESULT_STORAGE": str(Path(folder) / "results")})
        try:
            stack.start_server()
            stack.start_webhook()
            assert stack.server is not None and stack.server.child is not None
            server_group = stack.server.child.process.pid
            with httpx.Client(base_url=stack.webhook_url, headers=stack.webhook_headers, timeout=120) as client:
                for frozen in (False, True):
                    if frozen:
                        os.killpg(server_group, signal.SIGSTOP)
                    try:
                        for path in ("/health", "/api/instances/frozen-probe"):
                            for _ in range(args.repeat):
                                code, seconds = timed(client, path)
                                state = "frozen " if frozen else "running"
                                print(f"prefect {state}  GET {path:<28} {code}  {seconds:6.2f} s", flush=True)
                    finally:
                        if frozen:
                            os.killpg(server_group, signal.SIGCONT)
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
