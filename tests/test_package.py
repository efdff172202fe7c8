"""The package a user installs: ``python -m build`` makes an sdist and a wheel that ``twine
check`` accepts, with the suite schema and ``py.typed`` inside; the wheel, installed into a
fresh virtual environment, runs the example gate from there, not from the checkout.

Fast and offline: the build runs without isolation (setuptools, build and twine come with the
``test`` extra), from a copy of the checkout's files (the build writes nothing into the
checkout). The fresh environment gets the wheel alone (``pip --python ... --no-deps
--no-index``); its dependencies are those already installed in the suite's environment,
reached through a ``.pth`` file naming a directory of links to that environment's
site-packages, every entry but this project's own (its editable install), so the only
``pytest_triton_perf`` the fresh environment can import is the wheel's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

from tests.conftest import FAST_OPTIONS, REPO

NAME = "pytest_triton_perf"
#: Data files the package reads at run time or that type checkers look for.
DATA_FILES = ("py.typed", "triton-perf-suite.schema.json")
#: A share of the example gate: a passing SLA test per protocol and the failing-gate demo
#: (xfail), on the two models they use, with the suite's short windows.
EXAMPLE_TESTS = (
    "test_sleepy_meets_its_sla or test_simple_at_concurrency_4_over_http or test_demo_failing_gate"
)


def _run(*args: str | Path, cwd: Path | None = None, timeout: float = 300) -> str:
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )
    assert proc.returncode == 0, (
        f"{args} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


def _source_copy(dst: Path) -> Path:
    """The checkout's files as a fresh clone (with uncommitted work) would have them; a
    tree that is not a git checkout (a `git archive` export) is copied whole, without what
    its bootstrap and runs added (virtual environments, caches, build outputs)."""
    if not (REPO / ".git").exists():
        skip = shutil.ignore_patterns(
            ".venv*", "__pycache__", ".pytest_cache", "site", "build", "dist", "*.egg-info"
        )
        shutil.copytree(REPO, dst, ignore=skip, dirs_exist_ok=True)
        return dst
    listed = _run(
        "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO
    ).split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file() and "__pycache__" not in src.parts:
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    return dst


def _dependencies_dir(dst: Path) -> Path:
    """Links to every entry of this environment's site-packages but this project's own."""
    site = Path(sysconfig.get_paths()["purelib"])
    dst.mkdir()
    for entry in site.iterdir():
        own = entry.name.startswith((NAME, "__editable__", "pytest-triton-perf"))
        if not own and entry.suffix != ".pth":
            (dst / entry.name).symlink_to(entry)
    return dst


def test_wheel_and_sdist_install_and_run_the_example_gate(tmp_path: Path) -> None:
    """Build, check, inspect, install the wheel in a fresh environment, run the example."""
    source = _source_copy(tmp_path / "source")
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, source)
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    _run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist)

    in_wheel = zipfile.ZipFile(wheel).namelist()
    for data in DATA_FILES:
        assert f"{NAME}/{data}" in in_wheel
    assert not [n for n in in_wheel if n.startswith("tests/")]
    entry_points = next(n for n in in_wheel if n.endswith(".dist-info/entry_points.txt"))
    points = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[pytest11]" in points and "triton_perf = pytest_triton_perf.plugin" in points
    assert "triton-perf = pytest_triton_perf.cli:main" in points
    with tarfile.open(sdist) as tar:
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for data in DATA_FILES:
        assert f"{NAME}/{data}" in in_sdist
    assert {"pyproject.toml", "README.md", "PKG-INFO"} <= in_sdist
    assert not [n for n in in_sdist if n.startswith("tests/")]

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "-q",
        "--no-deps",
        "--no-index",
        wheel,
    )
    # Outside the checkout: ``python -c`` puts the working directory first on sys.path.
    purelib = _run(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
    )
    (Path(purelib.strip()) / "suite-dependencies.pth").write_text(
        f"{_dependencies_dir(tmp_path / 'dependencies')}\n"
    )
    imported = _run(python, "-c", f"import {NAME}; print({NAME}.__file__)", cwd=tmp_path).strip()
    assert Path(imported).is_relative_to(venv), imported
    assert (venv / "bin" / "triton-perf").exists()

    example = tmp_path / "example_repo"
    shutil.copytree(REPO / "example_repo", example, ignore=shutil.ignore_patterns("__pycache__"))
    # The plugin pytest registers there is the fresh environment's.
    plugins = _run(python, "-m", "pytest", "-VV", cwd=example)
    assert f"pytest-triton-perf-0.1.0 at {venv}" in plugins, plugins
    out = _run(
        python,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        *FAST_OPTIONS,
        "--triton-models=sleepy,simple",
        "-k",
        EXAMPLE_TESTS,
        cwd=example,
        timeout=300,
    )
    summary = out.strip().splitlines()[-1]
    assert re.search(r"\b2 passed\b.*\b1 xfailed\b", summary), out[-3000:]
    assert "= triton-perf =" in out
