"""The search-tree page: plain HTML, JS and SVG in `server/ui/` (no CDN, no build step, so it
works offline), served by the app at `/ui`, and inlined into one self-contained file for a
single search (`rstar solve --html out.html`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

UI_DIR = Path(__file__).with_name("ui")


def standalone_page(result: dict[str, Any]) -> str:
    """The page with its script, its style and `result` (a search result with its `tree`)
    inside, opening on that tree with no server behind it."""
    html = (UI_DIR / "index.html").read_text(encoding="utf-8")
    css = (UI_DIR / "style.css").read_text(encoding="utf-8")
    js = (UI_DIR / "tree.js").read_text(encoding="utf-8")
    # a step's text may contain "</script>": escaped, it cannot end the data block early
    data = json.dumps(result, ensure_ascii=False).replace("</", "<\\/")
    html = html.replace('<link rel="stylesheet" href="style.css">', f"<style>\n{css}</style>")
    return html.replace(
        '<script src="tree.js"></script>',
        f'<script type="application/json" id="rstar-embedded">{data}</script>\n'
        f"<script>\n{js}</script>",
    )
