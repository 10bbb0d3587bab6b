"""collage: a synthetic collage data engine for unified image generation and editing."""

__version__ = "0.1.0"
FORMAT_VERSION = 1
