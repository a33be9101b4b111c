"""`fanout up`: the local Prefect server, workers and webhook, supervised; PostgreSQL."""
