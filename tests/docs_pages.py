"""The documentation's pages and its generated tables, for the tests that hold them to the
code: the README, the pages of ``docs/`` and the hook that makes the reference tables."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README = REPO / "README.md"


@functools.cache
def hooks() -> ModuleType:
    """``docs/hooks.py``, the MkDocs hook that generates the reference tables (it is no
    module of a package: loaded from its path, as MkDocs loads it)."""
    spec = importlib.util.spec_from_file_location("triton_perf_docs_hooks", DOCS / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pages() -> list[Path]:
    """Every Markdown page of the site, and the README."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def page(name: str) -> str:
    """A page of ``docs/`` as a reader sees it: its placeholders filled."""
    return hooks().render((DOCS / name).read_text(encoding="utf-8"))
