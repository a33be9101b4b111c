"""The fanout-warm worker type: runs start in pre-imported processes; crash recovery."""
