"""Exit statuses and defaults that every ``triton-perf`` subcommand shares."""

from __future__ import annotations

from pytest_triton_perf.options import BASELINE_DIR

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_NOTHING_FEASIBLE = 1  # search: no configuration holds the SLA
EXIT_ERROR = 2
DEFAULT_DIR = BASELINE_DIR
