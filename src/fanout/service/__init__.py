"""Instances as clients see them: start, find, status, list, terminate, restart, purge."""
