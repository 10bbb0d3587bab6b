"""Assets: manifests (what exists), builders and importers (how it got there), the library (pixels at run time)."""

from .library import AssetLibrary, Sprite
from .manifest import MANIFEST_COLUMNS, load_manifests, manifest_digest

__all__ = ["AssetLibrary", "Sprite", "MANIFEST_COLUMNS", "load_manifests", "manifest_digest"]
