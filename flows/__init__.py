"""The fan-out/fan-in flow: settings, input model, processor, checkpoints, tasks."""
