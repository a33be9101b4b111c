"""The HTTP API: the webhook app, its /api/ routes and the Durable Functions routes."""
