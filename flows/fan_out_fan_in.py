"""The seed's orchestrator, deployed by `prefect.yaml`; it ships in `fanout.seed` so `fanout run` and `fanout up` have it anywhere.

Not `flows/fanout.py`: Prefect loads an entrypoint's file with its folder on `sys.path`, where a file named
`fanout.py` would stand in for the `fanout` package itself.
"""

from fanout.seed import fan_out_fan_in

__all__ = ["fan_out_fan_in"]
