"""What a run is asked to do: the request model, items and their keys, sources, admission."""
