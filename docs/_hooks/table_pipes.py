"""MkDocs hook: a pipe inside code in a table cell is written `\\|` so that GitHub's renderer
keeps the cell whole; Python-Markdown keeps the backslash inside code, so drop it there."""

from __future__ import annotations

import re
from typing import Any

_CODE = re.compile(r"<code>(.*?)</code>", re.S)


def on_page_content(html: str, **_: Any) -> str:
    return _CODE.sub(lambda m: "<code>" + m.group(1).replace("\\|", "|") + "</code>", html)
