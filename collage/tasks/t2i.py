"""t2i generators (being written)."""
