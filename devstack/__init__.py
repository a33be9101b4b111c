"""The dev stack: what `fanout up`, the end-to-end tests and the benchmarks use to run fanout locally.

Not part of the flow (`flows/`) or the ways to start it (`deployments/`): a local Prefect server,
workers, the webhook and PostgreSQL, their permissions, and the processors and fault moves that
tests and benchmarks share.
"""
