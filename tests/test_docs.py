"""The documentation site builds strictly (broken links and anchors fail), its reference
tables come from the code, and what the pages name (options, ini keys) exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_triton_perf.options import OPTIONS
from tests.docs_pages import DOCS, README, REPO, hooks, page, pages


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """``mkdocs build --strict``: a broken link or anchor, an unknown placeholder, a
    docstring mkdocstrings cannot render fails. Offline: the theme loads no web fonts."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "reference" / "options" / "index.html").is_file()
    assert "fonts.googleapis.com" not in (tmp_path / "index.html").read_text()
    print(f"mkdocs build --strict: {took:.1f} s")


def test_the_readme_is_short_and_keeps_its_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 400
    first = text.split("```", 2)[1]
    assert first.strip().splitlines() == [
        "scripts/bootstrap example && .venv/bin/pytest example_repo",
        "scripts/bootstrap test && .venv/bin/pytest",
    ]


def test_placeholders_are_all_known() -> None:
    """A misspelt placeholder would be left as an invisible HTML comment: every comment
    that mentions triton-perf is one the hook fills."""
    for path in DOCS.rglob("*.md"):
        text = path.read_text(encoding="utf-8")
        comments = re.findall(r"<!--.*?-->", text, re.S)
        odd = [c for c in comments if "triton-perf" in c and not hooks().PLACEHOLDER.fullmatch(c)]
        assert not odd, f"{path.relative_to(REPO)}: {odd}"
        assert "<!-- triton-perf:" not in hooks().render(text)


def test_unknown_placeholders_and_flags_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown placeholder"):
        hooks().render("<!-- triton-perf: nothing -->")
    with pytest.raises(ValueError, match="--triton-perf-nothing"):
        hooks().render("<!-- triton-perf: options --triton-perf-nothing -->")


def test_the_options_reference_is_the_option_table() -> None:
    text = page("reference/options.md")
    for opt in OPTIONS:
        row = next(line for line in text.splitlines() if f'id="{opt.flag[2:]}"' in line)
        assert f"`{opt.shown_default}`" in row, opt.flag
        if opt.switch:
            assert "none (a switch" in row, opt.flag
        else:
            assert f"`{opt.ini}`" in row, opt.flag


#: Flags of other tools that the pages quote.
FOREIGN = {"--triton-pool"}  # tmsctl lease create (docs/footprint.md)
FLAG = re.compile(r"(?<![\w-])(--triton-[a-z0-9-]*[a-z0-9])")
INI = re.compile(r"(?<![\w.])(triton_perf_[a-z0-9_]*[a-z0-9])\b")


def test_every_option_the_pages_name_exists() -> None:
    """An option or ini key named in the README or a page is one of the table (or a flag
    of another tool, :data:`FOREIGN`): the mismatch of a documented
    ini twin that does not exist cannot come back."""
    flags = {opt.flag for opt in OPTIONS} | {opt.alias for opt in OPTIONS if opt.alias} | FOREIGN
    inis = {opt.ini for opt in OPTIONS if not opt.switch}
    for path in pages():
        text = path.read_text(encoding="utf-8")
        unknown_flags = set(FLAG.findall(text)) - flags
        assert not unknown_flags, f"{path.relative_to(REPO)}: {sorted(unknown_flags)}"
        unknown_ini = set(INI.findall(text)) - inis
        assert not unknown_ini, f"{path.relative_to(REPO)}: {sorted(unknown_ini)}"


def test_the_readme_links_resolve() -> None:
    """The README is read on GitHub and on PyPI: its relative links name files of the
    repository (the site's own links are checked by the strict build)."""
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert local, "the README links to the documentation"
    missing = [t for t in local if not (REPO / t).exists()]
    assert not missing, f"README links to missing files: {missing}"
