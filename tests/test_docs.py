"""The user documentation: the mkdocs site builds with no warning (broken links and anchors,
pages missing from the nav, docstrings that do not parse are errors), the README stays short,
and no user-facing text names a path of one machine."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200
MACHINE_PATH = re.compile(r"/tmp/|/root/|/work/|/home/[A-Za-z0-9_.-]+")


def user_facing_texts() -> list[Path]:
    """README, the docs site's pages, the shipped models' cards, the benchmark results."""
    folders = [ROOT / "docs", ROOT / "src" / "rhosr" / "pretrained", ROOT / "benchmarks" / "results"]
    return [ROOT / "README.md"] + sorted(path for folder in folders for path in folder.rglob("*.md"))


def test_docs_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[dev]')")
    pytest.importorskip("mkdocstrings", reason="mkdocstrings is not installed (pip install -e '.[dev]')")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").exists()
    api = (tmp_path / "site" / "reference" / "prediction" / "index.html").read_text()
    assert "predict_density" in api  # the API reference is generated from the docstrings


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"


def test_user_facing_text_names_no_machine_path():
    found = []
    for path in user_facing_texts():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if MACHINE_PATH.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not found, "machine paths in user-facing text:\n" + "\n".join(found)


def test_machine_path_pattern_catches_home_folders():
    assert MACHINE_PATH.search("see /home/alice/runs") and MACHINE_PATH.search("/tmp/ci")
    assert not MACHINE_PATH.search("~/.cache/rhosr/stores/qm9_fast and runs/NAME")
