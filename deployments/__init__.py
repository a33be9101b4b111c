"""How the flow is started: the CLI, deployments, and the HTTP webhook starter."""
