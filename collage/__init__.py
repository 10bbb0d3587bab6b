"""collage: a synthetic collage data engine for unified image generation and editing."""

__version__ = "0.5.1"  # bump whenever the same seed would give other bytes: resume refuses to mix versions
FORMAT_VERSION = 2
