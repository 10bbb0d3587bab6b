"""Caption guards: decide whether a rewritten caption still says what a sample's template prompt says."""

from .guard import check

__all__ = ["check"]
