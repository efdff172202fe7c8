"""Messages that lead somewhere: a server that never answers names its address and the wait
actually used; a missing libpython names the package to install and the option that avoids
it; no message sends a user to a script of this repository (a pip user has none)."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_triton_perf.errors import ServerStartError
from pytest_triton_perf.server.local import LocalTritonServer, free_port
from tests.conftest import EXAMPLE_MODELS

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_triton_perf"
#: A path into this repository's checkout, which an installed package does not have.
REPOSITORY_PATH = re.compile(r"(?<![\w./-])(scripts|\.ci|docker|benchmarks|tests)/[\w.-]+")


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            found.add(id(first.value))
    return found


def test_no_message_names_a_script_of_this_repository() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and (match := REPOSITORY_PATH.search(node.value))
            ):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {match[0]}")
    assert not found, found


def test_a_url_that_never_answers_names_the_address_and_the_timeout_given(
    pytester: pytest.Pytester,
) -> None:
    port = free_port()  # nothing listens there
    pytester.makepyfile("def test_a(triton_perf):\n    triton_perf.measure('simple')\n")
    result = pytester.runpytest_subprocess(
        f"--triton-url=127.0.0.1:{port}", "--triton-startup-timeout=1.5"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"*Triton server could not be reached: no live KServe V2 server answered at "
            f"http://127.0.0.1:{port} within 1.5 s (--triton-startup-timeout; *"
            "Check --triton-url (and that the server runs and listens there), or wait longer "
            "for a server that is still loading its models with "
            "--triton-startup-timeout=SECONDS.",
        ]
    )


def test_a_stub_missing_its_libpython_names_the_package_and_the_option(tmp_path: Path) -> None:
    """A backend stub whose shared library is gone (built here against one, then removed):
    the message names what to install and the option that avoids it, never a script."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or shutil.which("ldd") is None:
        pytest.skip("needs a C compiler and ldd to build a stub with a missing library")
    (tmp_path / "gone.c").write_text("int gone(void) { return 0; }\n")
    (tmp_path / "stub.c").write_text("int gone(void);\nint main(void) { return gone(); }\n")
    build = [compiler, "-shared", "-fPIC", "-o", str(tmp_path / "libgone.so"), "gone.c"]
    subprocess.run(build, cwd=tmp_path, check=True, capture_output=True)
    link = [compiler, "-o", "stub", "stub.c", "-L.", "-lgone"]
    subprocess.run(link, cwd=tmp_path, check=True, capture_output=True)
    (tmp_path / "libgone.so").unlink()
    with pytest.raises(ServerStartError) as info:
        LocalTritonServer([EXAMPLE_MODELS])._check_stub_libraries(tmp_path / "stub")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    message = str(info.value)
    assert message.startswith(f"the Python backend stub {tmp_path / 'stub'} cannot load libgone.so")
    assert f"apt-get install libpython{version}" in message
    assert "--triton-image=nvcr.io/nvidia/tritonserver:<tag>-py3" in message
    assert not REPOSITORY_PATH.search(message)
