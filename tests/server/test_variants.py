"""Model variants on the suite's real embedded server: written into its variant repository
(a server the plugin started) or sent in the load request (a remote server), and nothing left
behind; the derived names and where a model's files are found."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from pytest_triton_perf.errors import ArgumentError
from pytest_triton_perf.server.http import get_json
from pytest_triton_perf.server.local import LocalTritonServer
from pytest_triton_perf.server.remote import RemoteTritonServer
from pytest_triton_perf.server.variants import (
    Variants,
    base_name,
    candidate_name,
    config_name,
    footprint_name,
    load_error,
    model_directory,
    reference_name,
)
from tests.conftest import EXAMPLE_MODELS

SLEEPY = EXAMPLE_MODELS / "sleepy"


def _config(instances: int) -> model_config_pb2.ModelConfig:
    config = text_format.Parse(
        (SLEEPY / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    del config.instance_group[:]
    config.instance_group.add(count=instances, kind=model_config_pb2.ModelInstanceGroup.KIND_CPU)
    return config


def _served_config(server: LocalTritonServer, name: str) -> dict[str, object] | None:
    status, payload = get_json(f"{server.base_url}/v2/models/{name}/config")
    return payload if status == 200 and isinstance(payload, dict) else None


def test_derived_names_and_their_base() -> None:
    assert reference_name("m") == "m__ref" and candidate_name("m") == "m__cand"
    assert config_name("m", 3) == "m__cfg3" and footprint_name("m") == "m__fp"
    assert base_name("m__ref") == base_name("m__cand") == "m"
    # A/B mode's later loads: numbered from 2.
    assert reference_name("m", 2) == "m__ref2" and candidate_name("m", 12) == "m__cand12"
    assert base_name("m__ref2") == base_name("m__cand12") == "m"
    assert base_name("m__ref1") == "m__ref1" and base_name("m__cand02") == "m__cand02"
    assert base_name("__ref") == "__ref" and base_name("m__cfg1") == "m__cfg1"


def test_a_variant_is_written_into_the_variant_repository_and_removed_with_its_unload(
    server: LocalTritonServer,
) -> None:
    variants = Variants(server)
    repository = server.variant_repository
    assert variants.repository == repository is not None
    config = _config(2)
    try:
        variants.load(SLEEPY, "sleepy__variant", config)
        written = repository / "sleepy__variant"
        # The model's files linked (or copied), its configuration renamed and edited; the
        # message given stays as it was.
        model_py = (written / "1" / "model.py").read_bytes()
        assert model_py == (SLEEPY / "1" / "model.py").read_bytes()
        on_disk = text_format.Parse(
            (written / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
        )
        assert on_disk.name == "sleepy__variant" and config.name == "sleepy"
        served = _served_config(server, "sleepy__variant")
        assert served is not None and served["name"] == "sleepy__variant"
        assert [g["count"] for g in served["instance_group"]] == [2]  # type: ignore[index]
        assert variants.unload(["sleepy__variant"]) == set()
        assert not written.exists() and variants.loaded == set()
        assert _served_config(server, "sleepy__variant") is None
    finally:
        variants.close()


def test_a_remote_server_gets_the_files_in_the_request_and_close_unloads(
    server: LocalTritonServer,
) -> None:
    remote = RemoteTritonServer(server.http_url, grpc_url=server.grpc_url).start()
    variants = Variants(remote)
    assert variants.repository is None
    variants.load(SLEEPY, "sleepy__remote", _config(1))
    assert server.variant_repository is not None
    assert not (server.variant_repository / "sleepy__remote").exists()
    assert _served_config(server, "sleepy__remote") is not None
    variants.close()  # unloads what is still loaded
    assert "sleepy__remote" not in {
        m["name"] for m in server.repository_index() if m.get("state") == "READY"
    }


def test_model_directory_says_where_it_looked_and_what_to_pass(
    server: LocalTritonServer, tmp_path: Path
) -> None:
    assert model_directory(server, "sleepy", who="w", then="") == SLEEPY
    assert model_directory(object(), "sleepy", EXAMPLE_MODELS, who="w", then="") == SLEEPY
    with pytest.raises(ArgumentError) as info:
        model_directory(server, "sleepy", tmp_path, who="search of model 'sleepy'", then="")
    assert str(info.value) == (
        f"search of model 'sleepy': model_repository={os.fspath(tmp_path)!r}: no "
        f"sleepy/config.pbtxt there; give the model repository that holds model 'sleepy'."
    )
    with pytest.raises(ArgumentError) as info:
        model_directory(object(), "sleepy", who="w", then=" (--model-repository)")
    assert str(info.value) == (
        "w: its files are not at hand: the server has no local model repository (a remote "
        "server). Pass model_repository=DIR (--model-repository)."
    )


def test_a_load_error_is_one_line_without_the_traceback() -> None:
    message = "load failed: boom;\n  more\n\nAt:\n  model.py(3): initialize"
    assert load_error(message) == "load failed: boom; more"
