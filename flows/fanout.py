"""The seed's orchestrator, deployed by `prefect.yaml`; it ships in `fanout.seed` so `fanout run` and `fanout up` have it anywhere."""

from fanout.seed import fan_out_fan_in

__all__ = ["fan_out_fan_in"]
