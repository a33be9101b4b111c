"""Inside a flow run: an item's path through its attempts, task runs, progress, the report."""
