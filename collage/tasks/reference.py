"""reference generators (being written)."""
