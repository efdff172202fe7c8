"""``triton-perf search`` end to end: against the suite's running server (``--triton-url``),
with a local server it starts itself (``--model-repository``), and its usage errors."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from pytest_triton_perf.cli import main
from pytest_triton_perf.server.local import LocalTritonServer
from tests.conftest import EXAMPLE_MODELS

SHORT = ["--warmup-s", "0.2", "--windows", "2", "--window-s", "0.3"]
TRITON_PERF = Path(sys.executable).parent / "triton-perf"


def _remote(server: LocalTritonServer) -> list[str]:
    return [
        "--triton-url",
        server.http_url,
        "--triton-grpc-url",
        server.grpc_url,
        "--model-repository",
        str(EXAMPLE_MODELS),
    ]


def test_search_prints_the_ranked_table_and_writes_the_best_config(
    server: LocalTritonServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = io.StringIO()
    code = main(
        [
            "search",
            "sleepy",
            *_remote(server),
            "--space",
            "instance_count: [1, 2]",  # YAML
            "--objective",
            "perf_throughput",
            "--concurrency",
            "2",
            "--sla",
            "p99_ms=500,max_error_rate=0",
            *SHORT,
            "--output",
            str(tmp_path / "config.pbtxt"),
            "--json",
            str(tmp_path / "search.json"),
        ],
        out,
    )
    text = out.getvalue()
    assert code == 0, text
    lines = text.splitlines()
    assert lines[0] == "sleepy: objective throughput, race over 2 configurations"
    assert lines[1].split()[:4] == ["rank", "candidate", "values", "objective"]
    assert lines[2].split()[:3] == ["1", "sleepy__cfg1", "instance_count=2"]
    assert lines[2].endswith("ok   finalist (best)")
    assert lines[3].split()[:3] == ["2", "sleepy__cfg0", "instance_count=1"]
    assert lines[3].endswith("ok   finalist (committed)")
    assert lines[4].startswith("best: sleepy__cfg1 (instance_count=2): throughput ")
    assert "the best beats it by" in lines[5]
    assert "+  count: 2" in text  # the diff
    written = text_format.Parse(
        (tmp_path / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    assert written.name == "sleepy" and written.instance_group[0].count == 2
    document = json.loads((tmp_path / "search.json").read_text())
    assert document["kind"] == "search" and document["best"] == "sleepy__cfg1"
    assert document["objective"] == "throughput" and document["sla"]["p99_ms"] == 500
    progress = capsys.readouterr().err
    # One challenger: a race with nothing to drop, both measured at full length.
    assert "sleepy__cfg1 rung 1 (full length): throughput" in progress
    assert not [
        m for m in server.repository_index() if "__cfg" in m["name"] and m["state"] == "READY"
    ]


def test_search_exits_1_when_no_configuration_holds_the_sla(
    server: LocalTritonServer, capsys: pytest.CaptureFixture[str]
) -> None:
    out = io.StringIO()
    args = ["search", "sleepy", *_remote(server), "--space", '{"instance_count": [2]}']
    args += ["--objective", "p99_ms", "--sla", "p99_ms=1", "--strategy", "grid", "-q", *SHORT]
    assert main(args, out) == 1
    text = out.getvalue()
    assert "best: none: no configuration holds the SLA" in text
    assert "FAIL  infeasible (committed): breaks p99_ms" in text
    assert capsys.readouterr().err == ""  # -q: no progress


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--space", "{instance_count: [1, 2"], "--space: not JSON or YAML"),
        (["--space", "[1, 2]"], "--space: a mapping of key -> list of values is accepted"),
        (["--space", "@no-such-file.json"], "--space=@no-such-file.json: cannot read"),
        (["--space", '{"instance_cnt": [1]}'], "Did you mean 'instance_count'"),
        (["--space", '{"instance_count": [0]}'], "the value 0 is not accepted"),
        (["--space", "{}", "--objective", "speed"], "search space: empty"),
        (["--objective", "speed"], "search objective 'speed' is not accepted"),
        (["--sla", "p99_ms"], "--sla: 'p99_ms' is not KEY=NUMBER"),
        (["--sla", "p99=30"], "unknown sla key 'p99'"),
        (["--concurrency", "0"], "--concurrency=0: a whole number >= 1"),
        (["--windows", "0"], "windows must be an integer >= 1"),
        ([], "give --model-repository DIR"),
        (["--model-repository", "."], r"--model-repository \.: no sleepy/config.pbtxt there"),
    ],
)
def test_usage_errors_exit_2_with_a_message_and_start_nothing(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if "--space" not in args:
        args = [*args, "--space", '{"instance_count": [1, 2]}']
    assert main(["search", "sleepy", *args], io.StringIO()) == 2
    err = capsys.readouterr().err
    assert err.startswith("triton-perf: error: ")
    assert re.search(message, err), err


def test_a_capacity_method_is_one_of_the_methods(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["search", "sleepy", "--space", '{"instance_count": [1]}', "--method", "fast"]
    with pytest.raises(SystemExit) as info:
        main(args, io.StringIO())
    assert info.value.code == 2
    assert "argument --method: invalid choice: 'fast' (choose from 'ramp', 'search')" in (
        capsys.readouterr().err
    )


def test_search_starts_its_own_local_server_on_a_model_repository(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("instance_count: [2]\n")
    command = [str(TRITON_PERF), "search", "sleepy", "--model-repository", str(EXAMPLE_MODELS)]
    command += ["--space", f"@{space}", "--objective", "throughput", "--concurrency", "2"]
    proc = subprocess.run(
        [*command, "--strategy", "grid", *SHORT],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert "starting a local server with model 'sleepy'" in proc.stderr
    assert "best: sleepy__cfg1 (instance_count=2): throughput" in proc.stdout
    assert f"to commit it: add --output {EXAMPLE_MODELS}/sleepy/config.pbtxt" in proc.stdout
