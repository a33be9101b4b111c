"""`fanout automations apply`: create or update the crash-resume automations on an existing server."""

from __future__ import annotations

from typing import Annotated

import typer

from fanout.cli.exit_codes import REFUSED, checked, fail
from fanout.core.settings import ResumeSettings

automations_app = typer.Typer(help="Prefect automations that resume crashed runs.", no_args_is_help=True)


@automations_app.command("apply")
def apply(
    deployment: Annotated[
        list[str] | None,
        typer.Option("--deployment", help="Limit to `fan-out-fan-in/<name>`; repeat for more. Default: all of them."),
    ] = None,
) -> None:
    """Create or update (idempotently) the automations for fanout's deployments on PREFECT_API_URL."""
    from fanout.service.automations import NoFanoutDeployment, apply_fanout_automations

    settings = checked(ResumeSettings)
    try:
        applied = apply_fanout_automations(settings, deployment or ())
    except NoFanoutDeployment as error:
        fail(f"{error}", REFUSED)
    for automation in applied:
        typer.echo(f"{automation.action} {automation.id} {automation.name}")
    typer.echo(
        f"runs emit fanout.flow-run.alive every {settings.liveness_seconds:g}s and are resumed after "
        f"{settings.silent_after_seconds}s without one; heartbeats every {settings.heartbeat_seconds}s (start workers "
        f"with PREFECT_FLOWS_HEARTBEAT_FREQUENCY={settings.heartbeat_seconds}), crashed after "
        f"{settings.crash_after_seconds}s without one; a Crashed run is retried after {settings.retry_window_seconds}s; "
        f"up to {settings.max_auto_retries} automatic retries"
    )
