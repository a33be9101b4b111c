"""Serve the flow from this process, with no work pool or worker: `python -m deployments.serve`.

`flow.serve` registers the deployment `fan-out-fan-in/serve` and runs its
flow runs here (each in a subprocess) until stopped; stopping it pauses the
deployment. Point the webhook at it with FANOUT_DEPLOYMENT_NAME=fan-out-fan-in/serve.
"""

from __future__ import annotations

SERVE_DEPLOYMENT = "serve"


def main(name: str = SERVE_DEPLOYMENT, limit: int | None = None) -> None:
    """Register `fan-out-fan-in/<name>` and run its flow runs until interrupted."""
    from flows.fanout import fan_out_fan_in

    fan_out_fan_in.serve(name=name, tags=["fanout"], limit=limit, print_starting_message=True)


if __name__ == "__main__":
    main()
