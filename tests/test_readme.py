"""The README quotes the recorded figures verbatim (the benchmarks write both: benchmarks/readme_blocks.py)."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name, doc", [("figures", "FIGURES.md"), ("timing", "TIMING.md"),
                                       ("brighton", "BRIGHTON.md"), ("terrain", "TERRAIN.md"),
                                       ("index_scale", "INDEX_SCALE.md"), ("vpr", "VPR.md"),
                                       ("runtime", "RUNTIME.md"), ("compression", "COMPRESSION.md")])
def test_readme_block_equals_the_recorded_document(name, doc):
    readme = (ROOT / "README.md").read_text()
    block = readme.split(f"<!-- {name}:begin -->\n", 1)[1].split(f"<!-- {name}:end -->", 1)[0]
    assert block == (ROOT / "docs" / doc).read_text(), f"README block '{name}' differs from docs/{doc}"
