"""How a search brings candidates into the server and out again: model variants
(``<model>__cfg<N>``, :class:`pytest_triton_perf.server.variants.Variants`), loaded one at a
time or all at once, unloaded with or without waiting; and what that cost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pytest_triton_perf.errors import TritonPerfError
from pytest_triton_perf.search.candidates import Arm
from pytest_triton_perf.server.variants import Variants, load_error, unload_models


class Loader:
    """Loads candidates as model variants and unloads them again; counts the loads and
    the seconds spent loading (a search's cost)."""

    def __init__(self, server: Any, src: Path, model: str):
        self.src, self.model = src, model
        self.variants = Variants(server)
        self.server = server
        #: Names asked to unload without waiting: a later load of one waits for it first.
        self.unloading: set[str] = set()
        self.loads = 0
        self.load_s = 0.0

    def load(self, arm: Arm, client: Any = None) -> str | None:
        """Load ``arm``; None when it loaded, else Triton's message."""
        from tritonclient.utils import InferenceServerException

        if arm.name in self.unloading:
            unload_models(self.variants.client(), [arm.name], self.variants.timeout_s)
            self.unloading.discard(arm.name)
        began = time.perf_counter()
        try:
            self.variants.load(self.src, arm.name, arm.config, client=client)
        except InferenceServerException as e:
            return load_error(str(e.message() or e))
        except OSError as e:
            return load_error(str(e))
        finally:
            self.loads += 1
            self.load_s += time.perf_counter() - began
        return None

    def failed(self, arm: Arm, why: str, notify: Callable[[str], None]) -> None:
        """``arm`` did not load (``why``: Triton's message). For the committed configuration
        that is an error: what fails for it (the server's model control, the load) fails
        for every candidate. Any other candidate is marked failed, and the search says so."""
        if arm.committed:
            raise TritonPerfError(
                f"search of model '{self.model}': loading a copy of it as '{arm.name}' "
                f"failed: {why}. The server must allow model control "
                f"(--model-control-mode=explicit)."
            )
        arm.status = "failed"
        arm.note = f"did not load: {why}"
        notify(f"  {arm.name}: failed to load ({arm.describe()}): {why}")

    def load_all(self, arms: Sequence[Arm]) -> dict[str, str | None]:
        """Load every arm at the same time, each from a thread with a client of its own
        (Triton loads models in parallel: Python backend stubs start side by side);
        arm name -> None (loaded) or Triton's message."""
        import tritonclient.http

        out: dict[str, str | None] = {}
        before, began = self.load_s, time.perf_counter()

        def one(arm: Arm) -> None:
            client = tritonclient.http.InferenceServerClient(
                str(self.server.http_url), network_timeout=self.variants.timeout_s
            )
            try:
                out[arm.name] = self.load(arm, client)
            finally:
                client.close()

        threads = [threading.Thread(target=one, args=(arm,)) for arm in arms]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Loaded side by side: the wall time is the cost, not the sum of the loads.
        self.load_s = before + (time.perf_counter() - began)
        return out

    def loaded(self, name: str) -> bool:
        """Whether ``name`` was loaded and not unloaded since."""
        return name in self.variants.loaded

    def unload(self, names: Iterable[str], *, wait: bool = True) -> None:
        """Unload ``names``; with ``wait``, until they are gone (raise when one stays
        loaded), else in the background (:meth:`settle` waits for them)."""
        names = sorted(set(names))
        if not names:
            return
        if not wait:
            self.variants.unload(names, wait=False)
            self.unloading.update(names)
            return
        left = self.variants.unload(names)
        if left:
            raise TritonPerfError(
                f"candidate(s) {', '.join(sorted(left))} still loaded "
                f"{self.variants.timeout_s:g} s after the unload request; unload them by hand."
            )

    def settle(self) -> None:
        """Wait until every candidate unloaded in the background is gone."""
        if self.unloading:
            left = unload_models(self.variants.client(), sorted(self.unloading), 60.0)
            self.unloading = set(left)
            if left:
                raise TritonPerfError(
                    f"candidate(s) {', '.join(sorted(left))} still loaded 60 s after the "
                    f"unload request; unload them by hand."
                )

    def close(self) -> None:
        """Unload whatever is still loaded (errors, interrupts) and close the client."""
        try:
            if self.unloading:
                self.variants.loaded |= self.unloading
                self.unloading = set()
        finally:
            self.variants.close()
