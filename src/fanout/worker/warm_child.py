"""What runs inside a warm flow-run process: one deployment flow run, then exit.

The warm worker (src/fanout/worker/warm_worker.py) forks these processes from a
`multiprocessing` forkserver that imported this module, Prefect's engine and
the flow before any run arrived, so a run pays for no interpreter start and no
imports: it takes its flow run from the worker, loads the flow (a cached import)
and runs it through Prefect's own engine, as `python -m prefect.engine` would.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

# Imported here so the forkserver holds them before the first run (this module is its preload).
import prefect.engine
import prefect.flow_engine  # noqa: F401
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.context import SettingsContext, SyncClientContext
from prefect.flows import Flow
from prefect.settings import Settings

from fanout.core.prefect_adapter import heartbeat_threads_not_joined, remember_related, skip_server_version_checks
from fanout.worker.warm_spare import DeploymentSource

SET_WORKING_DIRECTORY = "prefect.deployments.steps.set_working_directory"


def execute_forked(*handover: Any) -> None:
    """`execute` in a process forked for its run: it skips Prefect's checks of the server's version, which
    the worker made as it started (src/fanout/core/prefect_adapter.py)."""
    skip_server_version_checks()
    execute(*handover)


def execute(
    flow_run_json: str,
    env: Mapping[str, str],
    working_dir: str | None,
    deployment: DeploymentSource | None = None,
    related: Mapping[str, str] | None = None,
    prepared: ExitStack | None = None,
) -> None:
    """Run one flow run (as the worker read it, JSON) in this (forked) process with the run's environment and folder.

    `deployment` is the run's deployment as the worker read it (None: read it here), and `related` the
    objects its events relate to, as the worker read them (a kind left out is read here when needed).
    `prepared` holds what a spare process made ready under the worker's settings
    (src/fanout/worker/warm_spare.py): the run uses it, unless its environment changes
    a Prefect setting. Exits as `python -m prefect.engine` does: 0 once Prefect
    recorded the run's final state (a failed flow included), non-zero when the
    engine itself broke.
    """
    changed = _apply_environment(env)
    if working_dir:
        os.chdir(working_dir)
    prepend_python_path(env.get("PYTHONPATH"))
    flow_run = FlowRun.model_validate_json(flow_run_json)
    remember_related(dict(related or {}))
    if changed:
        if prepared is not None:
            from fanout.worker.warm_spare import discard

            discard(prepared)
        # Prefect read its settings when the forkserver imported it; this run's
        # environment changes some of them (PREFECT_* job variables), so read them again.
        with SettingsContext(profile=_current_profile(), settings=Settings()):
            _run(flow_run, deployment)
    else:
        with prepared or ExitStack():
            _run(flow_run, deployment)


def _run(flow_run: FlowRun, deployment: DeploymentSource | None) -> None:
    """Run `flow_run` as `python -m prefect.engine` does, without reading the run first.

    The worker's copy of the run (read when it polled) saves one API call on every
    start and resume: Prefect's engine proposes Running and then reads the run again
    before anything uses its state or run count, so only its id, parameters,
    deployment and retry policy are taken from the copy, and those do not change.
    """
    from prefect.engine import handle_engine_signals
    from prefect.flow_engine import flow_run_logger, load_flow, run_flow

    heartbeat_threads_not_joined()  # this process exits after its run
    try:
        # One API client for the whole run: the engine takes the one this context holds.
        with handle_engine_signals(flow_run.id), SyncClientContext.get_or_create() as clients:
            logger = flow_run_logger(flow_run=flow_run)
            try:
                flow = preloaded_flow(flow_run, clients.client, deployment) or load_flow(flow_run)
            except Exception:
                logger.error("Unexpected exception encountered when trying to load flow", exc_info=True)
                raise
            run_flow(flow, flow_run=flow_run, error_logger=logger)  # type: ignore[arg-type]  # an adapter, as `python -m prefect.engine` passes
    finally:
        _flush()


def preloaded_flow(
    flow_run: FlowRun, client: SyncPrefectClient, known: DeploymentSource | None = None
) -> Flow[..., Any] | None:
    """The deployment's flow object from the preloaded modules, when that is all loading it would do.

    Prefect's `load_flow` reads the deployment, runs its pull steps and imports
    the entrypoint's file again, which costs a run's start most of its time. For a
    deployment whose only pull steps set the working directory (what
    `prefect deploy` records for a local checkout) and whose entrypoint is a
    module the forkserver already imported (by file, or by module path as
    `fanout up` registers it), changing into that directory and taking the flow
    from the module is the same thing. Anything else: None, and Prefect loads
    the flow its own way. The deployment is `known` when the worker passed it, else read here.
    """
    if flow_run.deployment_id is None:
        return None
    if known is None:
        read = client.read_deployment(flow_run.deployment_id)
        known = DeploymentSource(read.entrypoint, read.pull_steps)
    deployment = known
    steps = deployment.pull_steps or []
    folders = [step.get(SET_WORKING_DIRECTORY, {}).get("directory") for step in steps]
    if not deployment.entrypoint or not all(
        isinstance(folder, str) and len(step) == 1 for folder, step in zip(folders, steps, strict=False)
    ):
        return None
    folder = Path(folders[-1]) if folders else Path.cwd()
    module, name = _preloaded_module(deployment.entrypoint, folder)
    candidate = getattr(module, name, None)
    if not isinstance(candidate, Flow):
        return None
    os.chdir(folder)
    return candidate


def _preloaded_module(entrypoint: str, folder: Path) -> tuple[ModuleType | None, str]:
    """The module an entrypoint names, if the forkserver imported that very module, and the flow's name in it.

    `src/fanout/seed.py:fan_out_fan_in` names a file (relative to `folder`), which must be the
    preloaded module's own file; `fanout.seed.fan_out_fan_in` names a module, which
    Prefect's import would take from `sys.modules` as it is.
    """
    if ":" not in entrypoint:
        module_name, _, name = entrypoint.rpartition(".")
        return sys.modules.get(module_name), name
    path, _, name = entrypoint.rpartition(":")
    module = sys.modules.get(path.removesuffix(".py").replace("/", "."))
    module_file = getattr(module, "__file__", None)
    if not module_file or Path(module_file).resolve() != (folder / path).resolve():
        return None, name
    return module, name


def _apply_environment(env: Mapping[str, str]) -> bool:
    """Put the run's variables in `os.environ`; True when a Prefect setting among them changed."""
    changed = any(
        name.startswith("PREFECT_") and not name.startswith("PREFECT__") and os.environ.get(name) != value
        for name, value in env.items()
    )
    os.environ.update(env)
    return changed


def prepend_python_path(python_path: str | None) -> list[str]:
    """Put the run's `PYTHONPATH` entries first on `sys.path`, as a new interpreter started with it would have
    them; the entries added.

    A forked process inherited the forkserver's `sys.path`, and setting the variable
    now changes nothing for imports: the run's modules (its entrypoint, what the
    entrypoint imports) would not be found. Relative entries resolve against the
    folder the run starts in, as Python resolves them at interpreter start.
    """
    entries = [os.path.abspath(entry) for entry in (python_path or "").split(os.pathsep) if entry]
    added = [entry for entry in dict.fromkeys(entries) if entry not in sys.path]
    sys.path[:0] = added
    importlib.invalidate_caches()
    return added


def _current_profile() -> object:
    current = SettingsContext.get()
    assert current is not None, "Prefect always has a settings context"
    return current.profile


def _flush() -> None:
    """Send the run's last logs and events: a multiprocessing child ends with `os._exit`,
    which skips the exit hooks that flush them in `python -m prefect.engine`."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)
    EventsWorker.drain_all(timeout=5)
