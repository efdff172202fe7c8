"""Exec shim: ``python _pdeathsig.py --parent PID -- PROGRAM ARGS...``.

Asks Linux to SIGKILL this process when its parent dies (``PR_SET_PDEATHSIG``), then
replaces itself with ``PROGRAM`` (the setting survives ``execve``). This is the local
launcher's watchdog for a SIGKILLed pytest, where no cleanup code runs: the kernel still
delivers the parent-death signal. Done in a process of its own instead of a ``preexec_fn``,
which is unsafe in a process with threads.

Standard library only, and run by path with ``-I -S``: it starts in milliseconds and never
imports the package.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    """Set the parent-death signal, check the parent is still there, exec the program."""
    if len(argv) < 4 or argv[0] != "--parent" or argv[2] != "--":
        print("usage: _pdeathsig.py --parent PID -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    parent, program = int(argv[1]), argv[3:]
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the launcher's other guards remain
        pass
    # The parent may have died before prctl took effect: then nobody would kill us.
    if os.getppid() != parent:
        return 1
    try:
        os.execv(program[0], program)
    except OSError as e:  # lands in the server log, which the launcher shows
        print(f"cannot execute {program[0]}: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
