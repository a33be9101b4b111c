"""Shared by every process: settings, errors, the Prefect adapter, item context and run hooks."""
