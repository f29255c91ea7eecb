"""Regenerate a marked section of a Markdown page (the tables scripts/*.py write into docs/)."""
from __future__ import annotations

import re
import sys
from pathlib import Path


def replace_section(doc: Path, begin: str, end: str, text: str) -> None:
    """Put `text` between the `begin` and `end` marker lines of `doc`; exit if they are missing."""
    src = doc.read_text()
    pat = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.DOTALL)
    if not pat.search(src):
        sys.exit(f"{doc} has no {begin} ... {end} section")
    doc.write_text(pat.sub(lambda _: f"{begin}\n{text}\n{end}", src))
