"""Exit statuses and defaults that every ``triton-perf`` subcommand shares, and how a
subcommand is added: :func:`add_command`, with its exit statuses declared once, where its
``--help`` lists them and ``triton-perf --help`` sums them up."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from typing import Any

from pytest_triton_perf.options import BASELINE_DIR

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_NOTHING_FEASIBLE = 1  # search: no configuration holds the SLA
EXIT_ERROR = 2
DEFAULT_DIR = BASELINE_DIR

#: A subcommand's exit statuses: (status, what it means), in order.
ExitStatuses = Sequence[tuple[int, str]]
#: The heading of the exit status section of every ``--help``.
EXIT_HEADING = "exit status:"
#: What status 2 means for every subcommand (argparse's own usage errors exit 2 too).
USAGE_ERROR = "a usage or file error (the message names the option or the file)"


def exit_section(statuses: ExitStatuses) -> str:
    """The ``exit status:`` section of a help text: one paragraph per status."""
    lines = [EXIT_HEADING]
    for code, what in statuses:
        lines += textwrap.wrap(
            f"{code}  {what}", width=76, initial_indent="  ", subsequent_indent="     "
        )
    return "\n".join(lines)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter (descriptions wrapped to the terminal) that keeps the lines
    of the exit status section as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith(EXIT_HEADING):
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


def add_command(
    sub: Any,
    name: str,
    *,
    exits: ExitStatuses,
    help: str,
    description: str | None = None,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """Add the subcommand ``name`` to ``sub`` (``add_subparsers()``'s action) whose
    ``--help`` ends with its exit statuses: ``exits``, then status 2 (:data:`USAGE_ERROR`)
    unless ``exits`` says otherwise. The statuses are also kept as the parser's default
    ``exit_statuses``, which :func:`exit_summary` reads."""
    statuses = list(exits)
    if all(code != EXIT_ERROR for code, _ in statuses):
        statuses.append((EXIT_ERROR, USAGE_ERROR))
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=description or help[:1].upper() + help[1:] + ".",
        epilog=exit_section(statuses),
        formatter_class=HelpFormatter,
        **kwargs,
    )
    parser.set_defaults(exit_statuses=tuple(statuses))
    return parser


def exit_summary(sub: Any) -> str:
    """The exit status section of ``triton-perf --help``, from what each subcommand declared
    (:func:`add_command`): per status other than success, the meaning most subcommands
    share, then the subcommands that mean something of their own by it (``search: ...``)."""
    meanings: dict[int, dict[str, list[str]]] = {}
    for name, parser in sub.choices.items():
        for code, what in parser.get_default("exit_statuses") or ():
            meanings.setdefault(code, {}).setdefault(what, []).append(name)
    lines = []
    for code in sorted(meanings):
        if code == EXIT_OK:
            lines.append((code, "success (what each command did: its --help)"))
            continue
        ranked = sorted(meanings[code].items(), key=lambda item: -len(item[1]))
        general = ranked[0][0] if len(ranked[0][1]) > 1 else None
        own = [f"{', '.join(names)}: {what}" for what, names in ranked if what != general]
        if general is None:
            lines.append((code, "; ".join(own)))
        else:
            lines.append((code, general + (f" ({'; '.join(own)})" if own else "")))
    return exit_section(lines) + "\n(each command's --help lists its own)"
