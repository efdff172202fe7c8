"""``python -m pytest_triton_perf``: the ``triton-perf`` command line."""

from __future__ import annotations

import sys

from pytest_triton_perf.cli import main

if __name__ == "__main__":
    sys.exit(main())
