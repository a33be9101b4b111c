"""Worked examples of fanout pipelines: processors and sources a deployment can name."""
