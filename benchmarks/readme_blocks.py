"""Copy recorded documents (docs/*.md) into the README's marked blocks, so the README quotes measurements
verbatim (tests/test_readme.py checks that they agree)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = {"figures": "FIGURES.md", "timing": "TIMING.md", "brighton": "BRIGHTON.md", "terrain": "TERRAIN.md",
          "vpr": "VPR.md", "index_scale": "INDEX_SCALE.md", "runtime": "RUNTIME.md",
          "compression": "COMPRESSION.md"}


def sync_readme(names=tuple(BLOCKS)) -> None:
    """Replace the text between ``<!-- name:begin -->`` and ``<!-- name:end -->`` with docs/<doc>."""
    readme = (ROOT / "README.md").read_text()
    for name in names:
        path = ROOT / "docs" / BLOCKS[name]
        begin, end = f"<!-- {name}:begin -->\n", f"<!-- {name}:end -->"
        if path.exists() and begin in readme:
            head, rest = readme.split(begin, 1)
            readme = head + begin + path.read_text() + end + rest.split(end, 1)[1]
    (ROOT / "README.md").write_text(readme)
