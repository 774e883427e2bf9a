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


def _options(parser) -> set[str]:
    """Every option string of a parser and of its subcommands' parsers."""
    import argparse

    found = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _options(sub)
    return found


def documented_commands() -> list[tuple[str, str]]:
    """``(where, command line)`` of every ``rhosr ...`` line in the README's and the docs'
    code blocks (continuation lines joined, comments dropped)."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = re.sub(r"\\\n\s*", " ", path.read_text())
        for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
            for line in block.splitlines():
                line = re.sub(r"^(\w+=\S*\s+)*", "", line.split(" #")[0].strip())  # VAR=value rhosr ...
                if line.startswith("rhosr "):
                    found.append((path.relative_to(ROOT).as_posix(), line))
    return found


def test_documented_commands_use_real_commands_and_options():
    """A renamed command or flag must not leave the user docs behind."""
    from rhosr.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    lines = documented_commands()
    assert len(lines) > 20
    wrong = []
    for where, line in lines:
        words = line.split()
        name = next((w for w in words[1:] if not w.startswith("-")), None)
        if name is not None and name not in commands:
            wrong.append(f"{where}: {line} (no command {name!r})")
            continue
        known = _options(parser) | (_options(commands[name]) if name else set())
        wrong += [f"{where}: {line} (no option {flag})"
                  for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line) if flag not in known]
    assert not wrong, "\n".join(wrong)


def test_documented_files_exist():
    """Scripts, results and modules the docs name in code (`...`) are in the repository."""
    pattern = re.compile(r"(?<![\w/.~-])((?:benchmarks|scripts|examples|tests|src|rhosr|configs)/[\w./-]+"
                         r"\.(?:py|sh|md|npz|yaml|csv|json|png))")
    missing = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = path.read_text()
        blocks = re.findall(r"```\w*\n(.*?)```", text, flags=re.S)
        code = " ".join(blocks + re.findall(r"`([^`\n]+)`", re.sub(r"```\w*\n.*?```", "", text, flags=re.S)))
        for name in set(pattern.findall(code)) - {"benchmarks/results/NAME.md"}:
            candidates = [ROOT / name, ROOT / "src" / name, ROOT / "src" / "rhosr" / name]
            if not any(c.exists() for c in candidates):
                missing.append(f"{path.relative_to(ROOT)}: {name}")
    assert not missing, "files named in the docs but not in the repository:\n" + "\n".join(missing)
