"""inpaint generators (being written)."""
