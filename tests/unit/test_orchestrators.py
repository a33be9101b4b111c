"""Which deployment an orchestrator name starts, and which flow parameters an orchestration input fills."""

from __future__ import annotations

from typing import Any

import pytest

from fanout.service.orchestrators import (
    BadOrchestrationInput,
    Orchestrator,
    UnknownOrchestrator,
    flow_parameters,
    resolve,
)

BACKUP = Orchestrator.from_schema(
    "e1-backup-site-content",
    "nightly",
    {
        "properties": {"root_directory": {"type": "string"}, "limit": {"type": "integer"}},
        "required": ["root_directory"],
    },
)
SEED = [
    Orchestrator("fan-out-fan-in", "default", ("request",)),
    Orchestrator("fan-out-fan-in", "http-enrich", ("request",)),
]


def test_a_flow_name_starts_its_one_deployment_whatever_its_spelling() -> None:
    """`E1_BackupSiteContent`-style names match Prefect's spelling: case and `_`/`-` do not matter."""
    assert resolve("E1_Backup_Site_Content", [BACKUP, *SEED]) is BACKUP


def test_a_deployment_name_alone_or_in_full_starts_that_deployment() -> None:
    """`nightly` and `fan-out-fan-in/http-enrich` each name one deployment."""
    assert resolve("nightly", [BACKUP, *SEED]) is BACKUP
    assert resolve("fan-out-fan-in/http-enrich", [BACKUP, *SEED]) is SEED[1]


def test_a_flow_with_several_deployments_is_ambiguous_and_the_answer_lists_them() -> None:
    """A flow name with two deployments answers 400 naming both, and how to choose."""
    with pytest.raises(UnknownOrchestrator, match=r"ambiguous.*'fan-out-fan-in/default', 'fan-out-fan-in/http-enrich'"):
        resolve("fan_out_fan_in", SEED)
    assert UnknownOrchestrator.status_code == 400


def test_an_unknown_name_lists_the_names_this_server_knows() -> None:
    """The 400 lists each flow with one deployment and every deployment in full."""
    with pytest.raises(UnknownOrchestrator) as refused:
        resolve("HelloCities", [BACKUP, *SEED])
    message = str(refused.value)
    assert "'HelloCities' doesn't exist" in message
    for name in ("'e1-backup-site-content'", "'e1-backup-site-content/nightly'", "'fan-out-fan-in/default'"):
        assert name in message
    assert "'fan-out-fan-in'," not in message


@pytest.mark.parametrize(
    ("value", "parameters"),
    [
        ("/home/site", {"root_directory": "/home/site"}),
        (["a", "b"], {"root_directory": ["a", "b"]}),
        ({"root_directory": "/srv", "limit": 3}, {"root_directory": "/srv", "limit": 3}),
        ({"path": "/srv"}, {"root_directory": {"path": "/srv"}}),
        (None, {}),
    ],
)
def test_an_input_fills_the_parameters_it_names_or_else_the_one_required_parameter(
    value: Any, parameters: dict[str, Any]
) -> None:
    """An object of the flow's parameters fills them; any other value is the single required parameter's."""
    assert flow_parameters(BACKUP, value) == parameters


def test_a_value_for_a_flow_without_one_required_parameter_is_refused_naming_its_parameters() -> None:
    """With no single required parameter, only an object of parameters will do; the 400 says which."""
    two = Orchestrator("copy", "default", ("source", "target"), ("source", "target"))
    with pytest.raises(BadOrchestrationInput, match="'copy/default' takes source, target"):
        flow_parameters(two, "/home/site")
