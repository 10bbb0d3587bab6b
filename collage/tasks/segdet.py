"""segdet generators (being written)."""
