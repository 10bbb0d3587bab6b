"""LLM caption refinement: a template prompt in, a natural caption that keeps every fact out, or the template.

guard (`check(meta, caption)`: a caption's problems) · prompt (what is asked, what of an answer may become a
caption) · client (requests bounded whatever the server does) · cache (answers kept, never paid twice) ·
refine (one sample: ask, clean, guard, retry) · rewrite (one shard) · pool (threads or processes) · run (the
`collage caption` pass) · settings (what a pass is, how it runs).
"""

from .guard import check

__all__ = ["check"]
