"""The QA gallery: a static site to browse, filter and flag samples of a run (`collage gallery`)."""

from .build import GalleryResult, build_gallery
from .serve import make_server

__all__ = ["build_gallery", "GalleryResult", "make_server"]
