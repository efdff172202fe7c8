"""Run a GitHub Actions job's own steps on this machine: the workflow rehearsal's runner.

What GitHub's runner does for a job and this one does the same way: the `env` of the workflow,
the job and the step, with their `${{ }}` expressions evaluated; each step's `if` (a status
function or, when there is none, `success() &&`); `run:` scripts with bash `-e` in the
workspace, with `$GITHUB_OUTPUT`, `$GITHUB_STEP_SUMMARY`, `$RUNNER_TEMP` and the `GITHUB_*`
variables; `steps.<id>.outputs` read back from `$GITHUB_OUTPUT`. What it cannot do here is the
caller's to say: a `uses:` step is handed to a callback, and every change to a `run:` script
is a named :class:`Substitution` that fails when its text is no longer in the script (so an
edit of the workflow never leaves the rehearsal running something else unnoticed).

The expression language is the subset GitHub documents for conditions and values: string,
number, boolean and null literals, context paths (``github.event.repository.default_branch``),
``!``, ``==``, ``!=``, ``&&``, ``||`` (which return an operand, as in GitHub), parentheses and
the status functions. Anything else is refused by name rather than guessed at.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>==|!=|&&|\|\||[!()])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*))"
)
_STATUS_FUNCTIONS = ("success", "always", "failure", "cancelled")


class ExpressionError(ValueError):
    """An expression outside the supported subset, or a context value the rehearsal lacks."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ExpressionError(f"cannot read the expression {text!r} at {text[pos:]!r}")
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "")


def _equal(a: Any, b: Any) -> bool:
    # GitHub compares strings ignoring case.
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    return bool(a == b)


class _Parser:
    def __init__(self, text: str, contexts: Mapping[str, Any], failed: bool) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0
        self.contexts = contexts
        self.failed = failed

    def parse(self) -> Any:
        value = self._or()
        if self.pos != len(self.tokens):
            raise ExpressionError(f"unexpected {self.tokens[self.pos][1]!r} in {self.text!r}")
        return value

    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise ExpressionError(f"the expression {self.text!r} ends too early")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def _chain(self, op: str, operand: Callable[[], Any], pick: Callable[[Any, Any], Any]) -> Any:
        value = operand()
        while self._peek() == op:
            self._take()
            value = pick(value, operand())
        return value

    def _or(self) -> Any:
        # `a || b` is the first truthy operand, `a && b` the first falsy one (or the last).
        return self._chain("||", self._and, lambda a, b: a if _truthy(a) else b)

    def _and(self) -> Any:
        return self._chain("&&", self._compare, lambda a, b: b if _truthy(a) else a)

    def _compare(self) -> Any:
        value = self._unary()
        if self._peek() in ("==", "!="):
            op = self._take()[1]
            right = self._unary()
            value = _equal(value, right) if op == "==" else not _equal(value, right)
        return value

    def _unary(self) -> Any:
        if self._peek() == "!":
            self._take()
            return not _truthy(self._unary())
        return self._primary()

    def _primary(self) -> Any:
        kind, text = self._take()
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text) if "." in text else int(text)
        if text == "(":
            value = self._or()
            if self._take()[1] != ")":
                raise ExpressionError(f"missing ')' in {self.text!r}")
            return value
        if kind != "name":
            raise ExpressionError(f"unexpected {text!r} in {self.text!r}")
        if text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        if self._peek() == "(":
            if text not in _STATUS_FUNCTIONS:
                raise ExpressionError(f"the function {text}() is not rehearsed ({self.text!r})")
            self._take()
            if self._take()[1] != ")":
                raise ExpressionError(f"{text}() takes no argument here ({self.text!r})")
            return {
                "success": not self.failed,
                "failure": self.failed,
                "always": True,
                "cancelled": False,
            }[text]
        return self._lookup(text)

    def _lookup(self, path: str) -> Any:
        value: Any = self.contexts
        for i, part in enumerate(path.split(".")):
            if not isinstance(value, Mapping) or part not in value:
                known = ", ".join(sorted(value)) if isinstance(value, Mapping) else "none"
                raise ExpressionError(
                    f"{path!r}: the rehearsal gives no value for "
                    f"{'.'.join(path.split('.')[: i + 1])!r} (it has: {known})"
                )
            value = value[part]
        return value


def evaluate(expression: str, contexts: Mapping[str, Any], *, failed: bool = False) -> Any:
    """The value of one expression (without ``${{ }}``) over ``contexts``; ``failed`` says
    whether a step before failed (for the status functions)."""
    return _Parser(expression, contexts, failed).parse()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def interpolate(text: str, contexts: Mapping[str, Any]) -> str:
    """``text`` with every ``${{ expression }}`` replaced by its value, as GitHub does for
    ``env`` and ``with`` values."""
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: _text(evaluate(m.group(1), contexts)), text)


def condition(text: str | None, contexts: Mapping[str, Any], *, failed: bool) -> bool:
    """Whether a step with ``if: text`` runs: ``success()`` when there is no ``if``, and
    ``success() && (text)`` when the text names no status function."""
    expression = (text or "success()").strip()
    if expression.startswith("${{") and expression.endswith("}}"):
        expression = expression[3:-2]
    if not any(re.search(rf"\b{f}\s*\(", expression) for f in _STATUS_FUNCTIONS):
        expression = f"success() && ({expression})"
    return _truthy(evaluate(expression, contexts, failed=failed))


@dataclass(frozen=True)
class Substitution:
    """One change the rehearsal makes to a step's script, and why this machine needs it."""

    step: str
    old: str
    new: str
    why: str

    def apply(self, script: str) -> str:
        """The script with ``old`` replaced; fails naming the substitution when the workflow
        no longer contains ``old``."""
        if self.old not in script:
            raise AssertionError(
                f"the rehearsal's substitution for step {self.step!r} ({self.why}) expects "
                f"{self.old!r} in its script, which now reads:\n{script}\nUpdate the rehearsal "
                f"together with the workflow."
            )
        return script.replace(self.old, self.new)


#: The plugin's checkout, which the suite's own environment has installed.
_CHECKOUT = Path(__file__).resolve().parents[1]
#: The commands the workflows run from their install step, and the suite's interpreter
#: arguments each stands for.
_COMMANDS = {"pytest": "pytest", "triton-perf": "pytest_triton_perf"}
#: The workflows' install step, replaced by the suite's own environment: ``.venv/bin/pytest``
#: and ``.venv/bin/triton-perf`` run the suite's interpreter on this checkout's plugin.
#: Installing the plugin's dependencies from the index takes a minute per rehearsal;
#: ``tests/test_package.py`` installs the wheel into a fresh environment and runs the
#: example gate from it, and ``tests/test_workflows.py`` checks the extras the step names.
SUITE_INSTALL = Substitution(
    "Install the plugin",
    "python3 -m venv .venv\n.venv/bin/python -m pip install -q --upgrade pip\n"
    '.venv/bin/python -m pip install -q ".[plots]"\n',
    "mkdir -p .venv/bin\n"
    + "".join(
        f"printf '#!/bin/sh\\nexec env PYTHONPATH=%s %s -m {module} \"$@\"\\n' "
        f"{shlex.quote(str(_CHECKOUT))} {shlex.quote(sys.executable)} >.venv/bin/{command}\n"
        for command, module in _COMMANDS.items()
    )
    + "chmod +x .venv/bin/*\n",
    "the suite's environment has the plugin and matplotlib: no install from the index",
)


@dataclass
class StepRun:
    """What one step did: skipped, or its exit status, output and duration."""

    name: str
    skipped: bool
    returncode: int = 0
    output: str = ""
    seconds: float = 0.0


@dataclass
class JobRun:
    """The steps of one job run, in order, and the outputs of the steps with an id."""

    steps: list[StepRun] = field(default_factory=list)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Whether any step that ran failed."""
        return any(s.returncode != 0 for s in self.steps if not s.skipped)

    def step(self, name: str) -> StepRun:
        """The run of the step named ``name``."""
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"no step {name!r} ran or was skipped: {[s.name for s in self.steps]}")

    def timings(self) -> str:
        """One line: each step that ran and its seconds."""
        return "; ".join(f"{s.name} {s.seconds:.0f} s" for s in self.steps if not s.skipped)

    def log(self) -> str:
        """Every step's status and the output of those that ran, for a failure message."""
        parts = []
        for s in self.steps:
            status = "skipped" if s.skipped else f"exit {s.returncode} in {s.seconds:.0f} s"
            parts.append(f"--- {s.name}: {status}\n{s.output[-6000:]}")
        return "\n".join(parts)


def _read_outputs(path: Path) -> dict[str, str]:
    """``$GITHUB_OUTPUT``'s ``name=value`` lines and ``name<<DELIMITER`` blocks."""
    outputs: dict[str, str] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            outputs[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
            continue
        name, _, value = line.partition("=")
        outputs[name] = value
        i += 1
    return outputs


def run_job(
    workflow: Mapping[str, Any],
    job: str,
    *,
    workspace: Path,
    github: Mapping[str, Any],
    base_env: Mapping[str, str],
    runner_temp: Path,
    substitutions: tuple[Substitution, ...] = (),
    env_overrides: Mapping[str, str] | None = None,
    uses: Callable[[str, Mapping[str, str], Mapping[str, str]], None] | None = None,
    timeout: float = 900,
    contexts: Mapping[str, Any] | None = None,
) -> JobRun:
    """Run the steps of ``workflow``'s ``job`` in ``workspace`` as GitHub's runner would.

    ``github`` is the ``github`` context; ``contexts`` the job's others: ``matrix`` and
    ``strategy`` for one entry of a matrix (:func:`matrix_entries`), ``needs`` for a job
    that needs others; ``base_env`` the runner's environment;
    ``env_overrides`` replace values of the workflow's ``env`` (after evaluation);
    ``uses(action, with_values, env)`` performs a ``uses:`` step (an AssertionError there
    fails the step). A substitution naming a step the job does not have fails at once.
    """
    spec = workflow["jobs"][job]
    names = [s.get("name") for s in spec["steps"]]
    for sub in substitutions:
        if sub.step not in names:
            raise AssertionError(
                f"the rehearsal substitutes in step {sub.step!r} ({sub.why}), which the job no "
                f"longer has: {names}"
            )
    result = JobRun()
    contexts = {**(contexts or {}), "github": github, "steps": {}}
    env_overrides = dict(env_overrides or {})
    runner_temp.mkdir(parents=True, exist_ok=True)
    summary = runner_temp / "step_summary.md"
    summary.touch()
    for index, step in enumerate(spec["steps"]):
        name = step.get("name") or step.get("uses") or f"step {index + 1}"
        if not condition(step.get("if"), contexts, failed=result.failed):
            result.steps.append(StepRun(name, skipped=True))
            continue
        env = dict(base_env)
        for scope in (workflow.get("env"), spec.get("env"), step.get("env")):
            for key, value in (scope or {}).items():
                env[key] = interpolate(str(value), contexts)
        env.update({k: v for k, v in env_overrides.items() if k in env})
        output_file = runner_temp / f"output-{index}"
        output_file.write_text("")
        env.update(
            {f"GITHUB_{k.upper()}": _text(v) for k, v in github.items() if not isinstance(v, dict)}
        )
        env.update(
            GITHUB_OUTPUT=str(output_file),
            GITHUB_STEP_SUMMARY=str(summary),
            GITHUB_WORKSPACE=str(workspace),
            RUNNER_TEMP=str(runner_temp),
        )
        started = time.monotonic()
        if "uses" in step:
            with_values = {
                k: interpolate(str(v), contexts) for k, v in step.get("with", {}).items()
            }
            run = StepRun(name, skipped=False)
            try:
                if uses is None:
                    raise AssertionError(f"the rehearsal cannot perform {step['uses']}")
                uses(step["uses"], with_values, env)
            except AssertionError as e:
                run.returncode, run.output = 1, str(e)
        else:
            script = step["run"]
            for sub in substitutions:
                if sub.step == name:
                    script = sub.apply(script)
            proc = subprocess.run(
                ["bash", "--noprofile", "--norc", "-e", "-c", script],
                cwd=workspace,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
            )
            run = StepRun(name, skipped=False, returncode=proc.returncode, output=proc.stdout)
        run.seconds = time.monotonic() - started
        result.steps.append(run)
        if "id" in step:
            result.outputs[step["id"]] = _read_outputs(output_file)
            contexts["steps"][step["id"]] = {
                "outputs": result.outputs[step["id"]],
                "outcome": "failure" if run.returncode else "success",
            }
    return result


def runner_environment(*, drop_prefix: str) -> dict[str, str]:
    """This process's environment as a runner's: without pytest's and Python's own settings,
    any GitHub variables of an enclosing run, and ``PATH`` entries under ``drop_prefix`` (the
    virtual environment running the suite), so ``python3`` is the machine's."""
    drop = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_CURRENT_TEST", "PYTEST_XDIST", "PYTHON")
    drop += ("VIRTUAL_ENV", "GITHUB_", "RUNNER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and not p.startswith(drop_prefix)
    )
    env.update(CI="true", GITHUB_ACTIONS="true")
    return env


def matrix_entries(job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``matrix`` and ``strategy`` contexts of each entry of a job's matrix, in GitHub's
    order (the last key varies fastest), for :func:`run_job`'s ``contexts``. A job without
    a matrix has one entry. ``include`` and ``exclude`` are not rehearsed (refused)."""
    import itertools

    strategy = job.get("strategy") or {}
    matrix = dict(strategy.get("matrix") or {})
    fail_fast = bool(strategy.get("fail-fast", True))
    if "include" in matrix or "exclude" in matrix:
        raise ExpressionError("matrix include/exclude is not rehearsed")
    keys = list(matrix)
    combos = list(itertools.product(*(matrix[k] for k in keys))) or [()]
    return [
        {
            "matrix": dict(zip(keys, values, strict=True)),
            "strategy": {"job-index": i, "job-total": len(combos), "fail-fast": fail_fast},
        }
        for i, values in enumerate(combos)
    ]
