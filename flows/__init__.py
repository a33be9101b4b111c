"""The flows that prefect.yaml deploys, each written on fanout's public API."""
