"""Checkpoints and results in result storage: the record format, journals, results pages, purge."""
