"""Symmetric A/B arms on the suite's real embedded server: both copies loaded alike, loaded
anew with fresh backend processes, and nothing left behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import psutil

from pytest_triton_perf.baseline.reference import ReferenceModels
from pytest_triton_perf.server.http import get_json
from pytest_triton_perf.server.local import LocalTritonServer
from tests.conftest import EXAMPLE_MODELS


def _ready(server: LocalTritonServer, name: str) -> bool:
    status, _ = get_json(f"{server.base_url}/v2/models/{name}/ready")
    return status == 200


def _stubs(server: LocalTritonServer) -> set[int]:
    """Pids of the server's Python-backend stubs (one per model instance)."""
    assert server.pid is not None
    found = set()
    for proc in psutil.Process(server.pid).children(recursive=True):
        if proc.name() == "triton_python_backend_stub":
            found.add(proc.pid)
    return found


def _affinities(pids: set[int]) -> dict[int, list[int]]:
    """Each live process's CPUs (a stub of an unloaded copy may be exiting: left out)."""
    out = {}
    for pid in pids:
        try:
            out[pid] = psutil.Process(pid).cpu_affinity()
        except psutil.NoSuchProcess:
            continue
    return out


def test_both_arms_are_copies_reloaded_with_fresh_processes_and_unloaded(
    server: LocalTritonServer, tmp_path: Path
) -> None:
    reference = tmp_path / "reference"
    shutil.copytree(EXAMPLE_MODELS / "sleepy", reference / "sleepy")
    refs = ReferenceModels(server, reference, origin="test", candidates=server.model_repositories)
    try:
        before = _stubs(server)
        arms = refs.arms("sleepy")
        assert arms == (
            "sleepy__ref",
            "sleepy__cand",
            "both arms loaded alike, as copies, in a random order",
        )
        assert _ready(server, "sleepy__ref") and _ready(server, "sleepy__cand")
        loaded = _stubs(server) - before
        assert len(loaded) == 2  # one backend process per copy
        # Loaded anew under new names while the old copies unload, which are gone by then.
        assert refs.reload("sleepy") == "loaded together"
        assert refs.served("sleepy") == ("sleepy__ref2", "sleepy__cand2")
        assert _ready(server, "sleepy__ref2") and _ready(server, "sleepy__cand2")
        assert not _ready(server, "sleepy__ref") and not _ready(server, "sleepy__cand")
        fresh = _stubs(server) - before
        assert len(fresh) == 2 and not fresh & loaded  # new processes, the old ones gone
        again = refs.refresher("sleepy")(True)
        assert again.names == ("sleepy__ref3", "sleepy__cand3") and _ready(server, "sleepy__ref3")
        assert refs.arms("nothing_like_it") is None
    finally:
        refs.unload_all()
    assert not _ready(server, "sleepy__ref3") and not _ready(server, "sleepy__cand3")
    assert server.variant_repository is not None
    assert list(server.variant_repository.iterdir()) == []


def test_without_the_candidates_files_the_arms_say_they_are_not_symmetric(
    server: LocalTritonServer, tmp_path: Path
) -> None:
    reference = tmp_path / "reference"
    shutil.copytree(EXAMPLE_MODELS / "sleepy", reference / "sleepy")
    refs = ReferenceModels(server, reference, origin="test")  # no local repository
    try:
        arms = refs.arms("sleepy")
        assert arms is not None
        assert arms[:2] == ("sleepy__ref", "sleepy")
        assert arms[2].startswith("arms not symmetric")
    finally:
        refs.unload_all()


def test_an_ensembles_arms_run_their_own_copies_of_its_steps(
    server: LocalTritonServer, tmp_path: Path
) -> None:
    """Each arm of the ensemble `pipeline` runs copies of `scale` and `sleepy` from its own
    side, written into the server's variant repository and loaded from there; a reload
    loads them anew, and unload_all leaves neither a loaded copy nor a file behind."""
    reference = tmp_path / "reference"
    for model in ("pipeline", "scale", "sleepy"):
        shutil.copytree(EXAMPLE_MODELS / model, reference / model)
    variants = server.variant_repository
    assert variants is not None and variants.is_dir()
    refs = ReferenceModels(server, reference, origin="test", candidates=server.model_repositories)
    copies = ["scale__ref", "sleepy__ref", "scale__cand", "sleepy__cand"]
    before = _stubs(server)
    try:
        # A step whose arms a plain test asked for first is a copy the ensemble can run.
        assert refs.arms("sleepy") is not None
        arms = refs.arms("pipeline")
        assert arms is not None and arms[:2] == ("pipeline__ref", "pipeline__cand")
        assert "its own copies of its composing models" in arms[2]
        for name in ["pipeline__ref", "pipeline__cand", *copies]:
            assert _ready(server, name), name
        names = ["pipeline__ref", "pipeline__cand", *copies]
        assert sorted(p.name for p in variants.iterdir()) == sorted(names)
        status, config = get_json(f"{server.base_url}/v2/models/pipeline__ref/config")
        assert status == 200
        steps = [s["model_name"] for s in config["ensemble_scheduling"]["step"]]
        assert steps == ["scale__ref", "sleepy__ref"]
        loaded = _stubs(server) - before
        assert len(loaded) >= 4  # a backend process per instance of each step copy
        refs.reload("pipeline")
        for name in ["pipeline__ref", "pipeline__cand", *copies]:
            assert _ready(server, name), name
        fresh = _stubs(server) - before
        assert len(fresh) == len(loaded) and not fresh & loaded  # loaded anew
    finally:
        refs.unload_all()
    for name in ["pipeline__ref", "pipeline__cand", *copies]:
        assert not _ready(server, name), name
    assert list(variants.iterdir()) == []


def test_pinned_arms_run_on_one_cpu_after_every_load(
    server: LocalTritonServer, tmp_path: Path
) -> None:
    reference = tmp_path / "reference"
    shutil.copytree(EXAMPLE_MODELS / "sleepy", reference / "sleepy")
    refs = ReferenceModels(
        server, reference, origin="test", candidates=server.model_repositories, pin=True
    )
    assert server.pid is not None
    last = max(psutil.Process(server.pid).cpu_affinity())
    try:
        before = _stubs(server)
        arms = refs.arms("sleepy")
        assert arms is not None and f"pinned instance by instance to the same CPU {last}" in arms[2]
        for _ in range(2):  # the first load, then a reload: fresh processes, pinned again
            mine = _affinities(_stubs(server) - before)
            assert len(mine) >= 2 and all(cpus == [last] for cpus in mine.values())
            assert refs.reload("sleepy") == "loaded together"
        # The server's own model is not the arms': it keeps every CPU.
        others = _affinities(before & _stubs(server))
        assert all(len(cpus) == psutil.cpu_count() for cpus in others.values())
    finally:
        refs.unload_all()


def test_pinned_arms_with_two_instances_keep_a_cpu_each_and_share_their_placement(
    server: LocalTritonServer, tmp_path: Path
) -> None:
    """Two instances per arm: each arm's two stubs on two CPUs (the instances still run in
    parallel), the same two for both arms."""
    for side in ("reference", "candidate"):
        shutil.copytree(EXAMPLE_MODELS / "sleepy", tmp_path / side / "sleepy2")
        config = tmp_path / side / "sleepy2" / "config.pbtxt"
        text = config.read_text().replace('name: "sleepy"', 'name: "sleepy2"')
        config.write_text(text.replace("count: 1", "count: 2"))
    refs = ReferenceModels(
        server, tmp_path / "reference", origin="test", candidates=[tmp_path / "candidate"], pin=True
    )
    assert server.pid is not None
    cpus = sorted(psutil.Process(server.pid).cpu_affinity(), reverse=True)
    expected = sorted([[cpus[0]], [cpus[1 % len(cpus)]]])
    try:
        before = _stubs(server)
        arms = refs.arms("sleepy2")
        assert arms is not None and "4 backend processes pinned instance by instance" in arms[2]
        ref, cand = arms[0], arms[1]
        for name in (ref, cand):
            stubs = {p.pid for p in psutil.Process(server.pid).children(recursive=True)
                     if any(f"/{name}/" in part for part in p.cmdline())}  # fmt: skip
            assert len(stubs) == 2 and stubs <= _stubs(server) - before, name
            assert sorted(_affinities(stubs).values()) == expected, name
    finally:
        refs.unload_all()
