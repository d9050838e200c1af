"""Audit guidelines: the admin writes Markdown, clinicians read it rendered.

CommonMark through markdown-it-py with raw HTML turned off, so whatever an admin pastes is shown
as text, never run: a ``<script>`` or an ``onerror=`` attribute comes out escaped, and
markdown-it's link check refuses ``javascript:``, ``vbscript:``, ``file:`` and non-image
``data:`` URLs. Tables and strikethrough (GFM) are on; links open in the same tab.
"""

from __future__ import annotations

import functools

from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

_RENDERER = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


@functools.lru_cache(maxsize=64)  # an audit's guidelines render once per process, not per item
def markdown_to_html(text: str) -> SafeString:
    """Safe HTML for ``text`` (CommonMark + tables; raw HTML escaped)."""
    return mark_safe(_RENDERER.render(text))  # html=False: nothing raw survives
