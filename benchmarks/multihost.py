"""The multi-host rehearsal's figures: items/s through two host deaths, and the items that ran twice.

The scenario is the e2e test's (tests/support/multihost.py, docs/scale-out.md): a
Prefect server on PostgreSQL, moto's S3 server holding the checkpoints, a Dask
scheduler and two `dask worker` processes, a Prefect worker; N items of about 4 ms;
one Dask worker SIGKILLed once a third ran, the Prefect worker and its flow-run process
once two thirds ran, and a fresh Prefect worker started. items/s counts from the run's
creation to its end, the resume after the Prefect worker's death included.

Run: `python -m benchmarks.multihost` (`--items N`, default 20,000; a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tests.support.multihost import multihost, rehearse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--sleep", type=float, default=0.004, help="seconds each item sleeps")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="fanout-multihost-") as scratch,
        multihost(Path(scratch)) as hosts,
    ):
        seen = rehearse(hosts, count=args.items, sleep=args.sleep)
    print(seen.summary())
    print(
        f"output right: {seen.output_right}; flow run count {seen.run_count}; items that ran twice: {len(seen.ran_twice)}"
    )


if __name__ == "__main__":
    main()
