"""Several hosts on one machine: the multi-host rehearsal (tests/e2e/test_multihost.py, benchmarks/multihost.py).

Each piece is its own command in its own process group, as on separate hosts:
a Prefect server on PostgreSQL with fanout's deployments and crash automations,
an S3 API (moto's server, standing in for a bucket), a Dask scheduler
(`dask scheduler`) and its workers (`dask worker tcp://...`), and Prefect
workers whose flow runs send their task runs to the Dask scheduler. Every host
is configured as a user configures a real bucket: `FANOUT_RESULT_STORAGE=s3://...`
and the AWS_* variables (keys, region, `AWS_ENDPOINT_URL_S3`) that boto and s3fs read.

`rehearse()` runs the scenario: a run of many items; a Dask worker SIGKILLed
(with its nanny) once a third of the items ran; the Prefect worker and its
flow-run process SIGKILLed once two thirds ran, and a fresh Prefect worker
started; the crash automations resume the same run, which continues from the
checkpoints on S3. It says what came out and which items ran more than once.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from fanout.localstack.polling import wait_for
from fanout.localstack.postgres import private_postgres
from fanout.localstack.processes import LOOPBACK, Child, free_port, spawn, wait_healthy
from fanout.localstack.stack import DEPLOYMENT, LocalStack
from tests.support.fault_stack import _sigkill
from tests.support.processes import descendants
from tests.support.stacks import FINAL_STATES

REPO_ROOT = Path(__file__).resolve().parents[2]
BUCKET = "fanout-rehearsal"
PROCESSOR = "tests.support.processors:scripted"
DASK_THREADS = 4


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@dataclass
class Hosts:
    """The running pieces, and the moves the rehearsal makes on them."""

    folder: Path
    stack: LocalStack
    s3_env: dict[str, str]
    scheduler: str
    dask_workers: dict[str, Child] = field(default_factory=dict)

    @property
    def storage_url(self) -> str:
        return f"s3://{BUCKET}/runs"

    @property
    def executions_dir(self) -> Path:
        return self.folder / "executions"

    def host_env(self, sleep: float) -> dict[str, str]:
        """What every host of the fleet has in its environment: the bucket's configuration and the test processor's."""
        return {
            **self.s3_env,
            "PYTHONPATH": str(REPO_ROOT),
            "FANOUT_TEST_LOG_DIR": str(self.executions_dir),
            "FANOUT_TEST_SLEEP": str(sleep),
        }

    def start_dask_worker(self, name: str, sleep: float) -> Child:
        """`dask worker tcp://...` with a nanny, as a host joining the cluster would run it."""
        argv = [
            _bin("dask"),
            "worker",
            self.scheduler,
            "--name",
            name,
            "--nthreads",
            str(DASK_THREADS),
            "--host",
            LOOPBACK,
            "--no-dashboard",
            "--local-directory",
            str(self.folder / "dask" / name),
        ]
        env = {**os.environ, **self.host_env(sleep)}
        child = spawn(f"dask-{name}", argv, env, self.folder / "logs", cwd=self.folder)
        self.dask_workers[name] = child
        return child

    def wait_for_dask_workers(self, count: int, timeout: float = 120) -> None:
        from distributed import Client

        with Client(self.scheduler, timeout=timeout) as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(count, timeout=timeout)

    def start_prefect_worker(self, sleep: float, max_parallel: int) -> Child:
        """A Prefect worker whose flow runs send their task runs to the Dask scheduler and checkpoint on S3."""
        return self.stack.start_worker(
            env={
                **self.host_env(sleep),
                "FANOUT_PROCESSOR": PROCESSOR,
                "FANOUT_TASK_RUNNER": "dask",
                "FANOUT_DASK_ADDRESS": self.scheduler,
                "FANOUT_MAX_PARALLEL": str(max_parallel),
                "FANOUT_RESULT_STORAGE": self.storage_url,
            }
        )

    def kill_host(self, child: Child) -> None:
        """SIGKILL a host's process group and everything it started, as the host dying would."""
        for pid in descendants(child.process.pid):
            _sigkill(pid)
        child.kill()
        if child in self.stack.workers:
            self.stack.workers.remove(child)

    def client(self) -> Any:
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.stack.api_url)

    def start_run(self, count: int) -> UUID:
        with self.client() as client:
            deployment = client.read_deployment_by_name(DEPLOYMENT)
            run = client.create_flow_run_from_deployment(deployment.id, parameters={"request": {"count": count}})
        return UUID(str(run.id))

    def wait_for_run(self, run_id: UUID, timeout: float) -> Any:
        """The run once it is final, read every half second over one client (each poll is the server's work too)."""
        with self.client() as client:

            def finished() -> Any:
                run = client.read_flow_run(run_id)
                return run if run.state is not None and run.state.type.value in FINAL_STATES else None

            return wait_for(finished, timeout, f"run {run_id} to finish", interval=0.5)

    def executions(self) -> Counter[str]:
        """How many times each item started, on any host."""
        return Counter(entry.name.split(".")[0] for entry in os.scandir(self.executions_dir))

    def storage(self) -> Any:
        """The bucket as this process (the user's, reading results) reaches it: the same settings, given explicitly."""
        from prefect.filesystems import RemoteFileSystem

        options = {
            "key": self.s3_env["AWS_ACCESS_KEY_ID"],
            "secret": self.s3_env["AWS_SECRET_ACCESS_KEY"],
            "client_kwargs": {
                "endpoint_url": self.s3_env["AWS_ENDPOINT_URL_S3"],
                "region_name": self.s3_env["AWS_DEFAULT_REGION"],
            },
        }
        return RemoteFileSystem(basepath=self.storage_url, settings=options)

    def checkpointed(self, instance_id: str, items: list[str]) -> dict[str, int]:
        """The items whose checkpoint is on S3 now, each with the times it had run by then."""
        from fanout.storage.checkpoints import CheckpointStore

        stored = CheckpointStore(self.storage(), instance_id, PROCESSOR).load(items)
        runs = self.executions()  # counted after the listing: every checkpointed run is in it
        return {item: runs[item] for item in stored}

    def output(self, instance_id: str) -> list[Any] | None:
        """The run's output as the status API shows it, read from S3."""
        from fanout.storage.run_output import load_run_output

        return load_run_output(self.storage(), instance_id).output


def start_s3(folder: Path, stack: ExitStack) -> dict[str, str]:
    """moto's S3 server on a free port, with the bucket made; the AWS_* variables a host needs to reach it."""
    port = free_port()
    child = spawn("s3", [_bin("moto_server"), "-H", LOOPBACK, "-p", str(port)], os.environ, folder / "logs")
    stack.callback(child.stop)
    endpoint = f"http://{LOOPBACK}:{port}"
    wait_healthy(f"{endpoint}/moto-api/", child, timeout=60)
    env = {
        "AWS_ACCESS_KEY_ID": "rehearsal-key",
        "AWS_SECRET_ACCESS_KEY": "rehearsal-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,
    }
    httpx.put(f"{endpoint}/{BUCKET}", timeout=30).raise_for_status()  # moto's server accepts it unsigned
    return env


def start_scheduler(folder: Path, stack: ExitStack) -> str:
    """`dask scheduler` on a free loopback port; its address. It unpickles the task graph, which names the
    test processor in tests/support, so it imports from the checkout as the workers do."""
    port = free_port()
    argv = [_bin("dask"), "scheduler", "--host", LOOPBACK, "--port", str(port), "--no-dashboard"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = spawn("dask-scheduler", argv, env, folder / "logs", cwd=folder)
    stack.callback(child.stop)
    return f"tcp://{LOOPBACK}:{port}"


def base_env() -> dict[str, str]:
    """This environment without FANOUT_* overrides: what each host starts from."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("FANOUT_")}
    return {**env, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


@contextmanager
def multihost(folder: Path, env: Mapping[str, str] | None = None) -> Iterator[Hosts]:
    """Every piece started, and stopped again on exit whatever happened; `env`: the hosts' base environment."""
    env = base_env() if env is None else env
    with ExitStack() as stack:
        cluster = stack.enter_context(private_postgres())
        s3_env = start_s3(folder, stack)
        scheduler = start_scheduler(folder, stack)
        stack_env = {**env, **s3_env, "PYTHONPATH": str(REPO_ROOT), "FANOUT_RESULT_STORAGE": f"s3://{BUCKET}/runs"}
        local = LocalStack(home=folder / "stack", database_url=cluster.database_url(), env=stack_env)
        stack.callback(local.stop)
        local.start_server()
        local.deploy()
        hosts = Hosts(folder=folder, stack=local, s3_env=s3_env, scheduler=scheduler)
        hosts.executions_dir.mkdir(parents=True, exist_ok=True)
        try:
            yield hosts
        finally:
            for child in hosts.dask_workers.values():
                child.stop()


@dataclass
class Rehearsal:
    """What the rehearsal saw."""

    count: int
    state: str
    run_count: int
    output_right: bool
    executions: Counter[str]
    checkpointed_before_dask_kill: dict[str, int]
    checkpointed_before_flow_kill: dict[str, int]
    """Items checkpointed on S3 just before each kill, with the times each had run by then."""
    seconds: float
    history: list[str]

    @property
    def ran_twice(self) -> list[str]:
        return sorted(item for item, runs in self.executions.items() if runs > 1)

    @property
    def rerun_after_checkpoint(self) -> list[str]:
        """Items that ran again after a kill although their checkpoint was on S3 before it: must be none."""
        snapshots = (self.checkpointed_before_dask_kill, self.checkpointed_before_flow_kill)
        return sorted({item for runs in snapshots for item, then in runs.items() if self.executions[item] > then})

    def summary(self) -> str:
        return (
            f"{self.count:,} items on 2 Dask workers (one killed at 1/3) and S3, the Prefect worker killed at 2/3: "
            f"{self.state} in {self.seconds:.1f} s, {self.count / self.seconds:,.0f} items/s; "
            f"{len(self.ran_twice)} items ran twice, {len(self.rerun_after_checkpoint)} of them after their "
            f"checkpoint was stored"
        )


def rehearse(
    hosts: Hosts, count: int = 20_000, sleep: float = 0.004, timeout: float = 600, say: Callable[[str], None] = print
) -> Rehearsal:
    """The scenario: see the module's docstring. `say` hears each step as it happens."""
    items = [f"item-{index}" for index in range(1, count + 1)]
    for name in ("host-a", "host-b"):
        hosts.start_dask_worker(name, sleep)
    hosts.wait_for_dask_workers(2)
    prefect_worker = hosts.start_prefect_worker(sleep, max_parallel=2 * DASK_THREADS)
    started = time.monotonic()
    run_id = hosts.start_run(count)
    instance = str(run_id)
    say(f"run {run_id} of {count:,} items started")

    def executed(share: float) -> Callable[[], bool]:
        return lambda: len(hosts.executions()) >= count * share

    # Each look lists up to 20,000 files: every half second is close enough to a third.
    wait_for(executed(1 / 3), timeout / 3, "a third of the items", interval=0.5)
    # Killed first, read after: reading 20,000 checkpoints takes seconds on a busy machine, and the
    # run must still be working when the kill comes. Checkpoints only grow, so what is read now was
    # on S3 before anything that runs after the kill.
    hosts.kill_host(hosts.dask_workers["host-a"])
    before_dask_kill = hosts.checkpointed(instance, items)
    say(f"{time.monotonic() - started:.1f} s: Dask host-a killed, {len(before_dask_kill):,} items checkpointed")
    wait_for(executed(2 / 3), timeout / 3, "two thirds of the items", interval=0.5)
    hosts.kill_host(prefect_worker)
    before_flow_kill = hosts.checkpointed(instance, items)
    say(f"{time.monotonic() - started:.1f} s: Prefect worker killed, {len(before_flow_kill):,} items checkpointed")
    hosts.start_prefect_worker(sleep, max_parallel=2 * DASK_THREADS)
    run = hosts.wait_for_run(run_id, timeout)
    seconds = time.monotonic() - started
    say(f"{seconds:.1f} s: run {run.state.type.value}")
    with hosts.client() as client:
        history = [f"{state.name}: {state.message or ''}"[:160] for state in client.read_flow_run_states(run_id)]
    state = run.state.type.value
    output = hosts.output(instance) if state == "COMPLETED" else None
    return Rehearsal(
        count=count,
        state=state,
        run_count=run.run_count,
        output_right=output == [f"Processed {item}" for item in items],
        executions=hosts.executions(),
        checkpointed_before_dask_kill=before_dask_kill,
        checkpointed_before_flow_kill=before_flow_kill,
        seconds=seconds,
        history=history,
    )
