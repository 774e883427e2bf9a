"""MkDocs hook: publish the benchmark pictures under ``results/`` without copying them into
``docs/`` (``benchmarks/results/`` stays the one place they live)."""

import re
from pathlib import Path

from mkdocs.structure.files import File

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def on_files(files, config):
    for picture in sorted(RESULTS.rglob("*.png")):
        uri = "results/" + picture.relative_to(RESULTS).as_posix()
        files.append(File.generated(config, uri, abs_src_path=str(picture)))
    return files


SPHINX_ROLE = re.compile(r":(?:func|class|data|meth|mod|attr|obj):(?=<code>)")


def on_post_page(output, page, config):
    """Docstrings cite names Sphinx-style (:func:`x`); show them as plain code."""
    return SPHINX_ROLE.sub("", output)
