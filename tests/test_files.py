"""The one atomic writer: the old file or the new one, never half, never a stray temp file."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pytest_triton_perf import files
from pytest_triton_perf.baseline import store
from pytest_triton_perf.report import json_report, junit, markdown


def test_writes_into_new_directories_with_unix_line_ends(tmp_path: Path) -> None:
    path = files.atomic_write_text(tmp_path / "a" / "b" / "out.txt", "one\r\ntwo\n")
    assert path == tmp_path / "a" / "b" / "out.txt"
    assert path.read_bytes() == b"one\r\ntwo\n"
    assert files.atomic_write_text(path, "é\n").read_bytes() == "é\n".encode()
    assert [p.name for p in path.parent.iterdir()] == ["out.txt"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failure_keeps_the_old_file_byte_identical_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / "results.json"
    path.write_bytes(b"old \x00 content")

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, failing, full)
    with pytest.raises(OSError, match="No space left on device"):
        files.atomic_write_text(path, "new content\n")
    assert path.read_bytes() == b"old \x00 content"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_baselines_and_reports_share_it() -> None:
    for module in (store, json_report, junit, markdown):
        assert module.atomic_write_text is files.atomic_write_text, module.__name__
