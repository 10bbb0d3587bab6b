"""edit generators (being written)."""
