"""Which deployment a Durable Functions orchestrator name starts, and the flow parameters its input fills.

A name is compared the way Prefect spells names (case and `_`/`-` ignored) and names a flow (its one
deployment) or a deployment; anything else, or several matches, is `UnknownOrchestrator` listing the
names known. An input object whose keys are all the flow's parameters fills them; any other value is the
value of the flow's one required parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fanout.service.webhook_errors import WebhookError


class UnknownOrchestrator(WebhookError):
    """The name matches no deployment, or more than one; the message lists the names known."""

    status_code = 400


class BadOrchestrationInput(WebhookError):
    """The input cannot be the flow's parameters; the message says which parameters the flow takes."""

    status_code = 400


@dataclass(frozen=True)
class Orchestrator:
    """A deployment as an orchestrator: its names and its flow's parameters (from its parameter schema)."""

    flow: str
    deployment: str
    parameters: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    deployment_id: Any = field(default=None, compare=False)

    @property
    def full_name(self) -> str:
        """`flow/deployment`, as Prefect names a deployment."""
        return f"{self.flow}/{self.deployment}"

    @classmethod
    def from_schema(
        cls, flow: str, deployment: str, schema: dict[str, Any] | None, deployment_id: Any = None
    ) -> Orchestrator:
        """The orchestrator of a deployment with this `parameter_openapi_schema`."""
        properties = (schema or {}).get("properties") or {}
        required = (schema or {}).get("required") or []
        return cls(
            flow, deployment, tuple(properties), tuple(name for name in required if name in properties), deployment_id
        )


def spelled(name: str) -> str:
    """A name as compared: case-folded, `_` as `-` (Prefect names a flow after its function this way)."""
    return name.casefold().replace("_", "-")


def resolve(name: str, known: Iterable[Orchestrator]) -> Orchestrator:
    """The one deployment `name` starts (see the module docstring), else `UnknownOrchestrator`."""
    orchestrators = list(known)
    wanted = spelled(name)
    matches = [o for o in orchestrators if wanted in (spelled(o.full_name), spelled(o.flow), spelled(o.deployment))]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UnknownOrchestrator(
            f"The orchestrator name '{name}' is ambiguous: it names {_names(matches)}; "
            "use the deployment's full name (flow/deployment)."
        )
    raise UnknownOrchestrator(
        f"The function '{name}' doesn't exist or is not an orchestrator; this server knows {_known(orchestrators)}."
    )


def _names(orchestrators: Iterable[Orchestrator]) -> str:
    return ", ".join(f"'{o.full_name}'" for o in orchestrators)


def _known(orchestrators: list[Orchestrator]) -> str:
    """Every name that would resolve: each flow with one deployment, and each deployment in full."""
    if not orchestrators:
        return "no deployments"
    flows: dict[str, int] = {}
    for orchestrator in orchestrators:
        flows[orchestrator.flow] = flows.get(orchestrator.flow, 0) + 1
    names = sorted({flow for flow, count in flows.items() if count == 1} | {o.full_name for o in orchestrators})
    return ", ".join(f"'{name}'" for name in names)


def flow_parameters(orchestrator: Orchestrator, value: Any) -> dict[str, Any]:
    """The flow-run parameters an orchestration input fills (see the module docstring); None: no input."""
    if value is None:
        return {}
    if isinstance(value, dict) and orchestrator.parameters and set(value) <= set(orchestrator.parameters):
        return dict(value)
    if len(orchestrator.required) == 1:
        return {orchestrator.required[0]: value}
    takes = ", ".join(orchestrator.parameters) or "no parameters"
    raise BadOrchestrationInput(
        f"'{orchestrator.full_name}' takes {takes}: send an object of those parameters "
        "(any other input needs a flow with exactly one required parameter)."
    )
