"""The launcher a session's settings ask for."""

from __future__ import annotations

from collections.abc import Callable

from pytest_triton_perf.errors import ConfigError
from pytest_triton_perf.options import REMOTE_STARTUP_TIMEOUT_S, STARTUP_TIMEOUT_S
from pytest_triton_perf.server.base import TritonServer
from pytest_triton_perf.settings import Settings


def make_server(
    settings: Settings,
    *,
    log_dir: str | None = None,
    notify: Callable[[str], None] | None = None,
    worker: tuple[int, int] | None = None,
    gpu_count: Callable[[], int] | None = None,
) -> TritonServer:
    """The launcher the settings ask for: remote with ``--triton-url`` (it wins: a running
    server is the most specific target), a container with ``--triton-image``, else local.

    ``notify`` shows a line to the user at once (image pull progress, stale containers).
    ``worker`` (index, count) of a pytest-xdist worker splits ``--gpus`` between workers;
    ``gpu_count`` tells how many GPUs the host has (read only then).
    """
    if settings.url:
        from pytest_triton_perf.server import remote

        return remote.RemoteTritonServer(
            settings.url,
            grpc_url=settings.grpc_url,
            models=settings.models,
            startup_timeout_s=settings.startup_timeout_s or REMOTE_STARTUP_TIMEOUT_S,
        )
    startup_timeout_s = settings.startup_timeout_s or STARTUP_TIMEOUT_S
    from pytest_triton_perf.server.local import LocalTritonServer

    if settings.model_repository is None:
        raise ConfigError(
            "no model repository: set --triton-model-repository=DIR or the ini key "
            "triton_model_repository (relative to the ini file), or measure a running "
            "server with --triton-url=HOST:PORT."
        )
    if settings.image:
        from pytest_triton_perf.options.container import split_for_worker, ulimit_value
        from pytest_triton_perf.server.container import ContainerTritonServer

        gpus = settings.gpus
        if gpus is not None and worker is not None:
            host_gpus = gpu_count() if gpu_count is not None else 0
            gpus, warning = split_for_worker(gpus, worker[0], worker[1], host_gpus)
            if warning and notify is not None:
                notify(f"triton-perf: {warning}")

        return ContainerTritonServer(
            [settings.model_repository],
            image=settings.image,
            models=settings.models,
            gpus=gpus,
            pull=settings.pull,
            network=settings.network,
            shm_size=settings.shm_size,
            ipc=settings.ipc,
            ulimit_memlock=ulimit_value(settings.ulimit_memlock),
            ulimit_stack=ulimit_value(settings.ulimit_stack),
            docker_kwargs=settings.docker_kwargs,
            log_dir=log_dir,
            startup_timeout_s=startup_timeout_s,
            notify=notify,
        )
    return LocalTritonServer(
        [settings.model_repository],
        notify=notify,
        models=settings.models,
        server_path=settings.server_path,
        log_dir=log_dir,
        startup_timeout_s=startup_timeout_s,
    )
