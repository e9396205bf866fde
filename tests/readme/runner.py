"""Runs the shell blocks of a Markdown file, in order, in one bash, and checks each
command's answer against the ``# →`` comment that follows it.

A block is a fenced ```bash or ```sh block. Each command of it (a line, with its ``\\``
continuations and multi-line quoted strings) runs in the same shell as the ones before,
as a reader pasting the blocks into one terminal would. ``curl`` is wrapped so that each
call's HTTP status and body are recorded; a command passes when it exits 0, every curl it
made answered below 400 (or as its expectation says), and its expectation holds:

    curl -s $HERALD_API/v1/notifications ...
    # → 202 {"id": "…", "status": "accepted"}

An expectation is a status (``409``, or ``202 or 409``), then optionally a JSON value the
answer must contain (a subset: extra keys are fine; ``…`` stands for any value, or any
text inside a string), then free text. Continuation lines start with ``#`` and two
spaces. Without a curl, the JSON is matched against what the command printed, and plain
text after ``→`` must appear in it. A block containing ``# readme-test: skip (why)`` is
not run, nor is a command whose own line ends with that comment; the reason is
reported.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SKIP = re.compile(r"#\s*readme-test:\s*skip\s*\((?P<why>.+)\)\s*$")
ARROW = "→"
STATUSES = re.compile(r"\s*(?P<first>\d{3})(?P<more>(?:\s*(?:or|\|)\s*\d{3})*)\b")
ANY = "…"


@dataclass
class Expectation:
    """What one ``# →`` comment asks of its command's answer."""

    line: int
    text: str
    statuses: set[int] = field(default_factory=set)
    value: Any = None
    has_value: bool = False
    rest: str = ""


@dataclass
class Command:
    """One command of a block and what follows it."""

    line: int
    text: str
    expectations: list[Expectation] = field(default_factory=list)
    skip: str | None = None


@dataclass
class Block:
    """A fenced shell block."""

    line: int
    commands: list[Command]
    skip: str | None = None


@dataclass
class Outcome:
    """What running a file's blocks found."""

    failures: list[str]
    skipped: list[str]
    ran: int
    variables: dict[str, str]


class ExpectationError(ValueError):
    """An expectation comment that cannot be read."""


def parse_blocks(text: str) -> list[Block]:
    """The ```bash and ```sh blocks of a Markdown text, with their commands."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        fence = lines[index].strip()
        if fence in ("```bash", "```sh"):
            start = index + 1
            end = start
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            blocks.append(_block(lines[start:end], start + 1))
            index = end + 1
        elif fence.startswith("```"):
            # Another language's block: skip to its closing fence.
            index += 1
            while index < len(lines) and lines[index].strip() != "```":
                index += 1
            index += 1
        else:
            index += 1
    return blocks


def _block(lines: list[str], first_line: int) -> Block:
    commands: list[Command] = []
    skip = None
    current: list[str] = []
    current_line = 0
    quote: str | None = None
    continuing = False  # the last expectation may go on over the next comment line
    for offset, raw in enumerate(lines):
        number = first_line + offset
        if current:
            current.append(raw)
            quote, code = _scan(raw, quote)
            if quote is None and not code.rstrip().endswith("\\"):
                commands.append(_command(current_line, current))
                current = []
            continue
        stripped = raw.strip()
        if not stripped:
            continuing = False
            continue
        if stripped.startswith("#"):
            if match := SKIP.search(stripped):
                skip = match["why"]
            elif stripped.startswith(f"# {ARROW}") and commands:
                body = stripped.split(ARROW, 1)[1]
                commands[-1].expectations.append(Expectation(number, body))
                continuing = True
                continue
            elif continuing and raw.startswith("#  ") and commands:
                commands[-1].expectations[-1].text += "\n" + raw[1:]
                continue
            continuing = False
            continue
        continuing = False
        quote, code = _scan(raw, None)
        if quote is None and not code.rstrip().endswith("\\"):
            commands.append(_command(number, [raw]))
        else:
            current, current_line = [raw], number
    if current:
        commands.append(_command(current_line, current))
    for command in commands:
        for expectation in command.expectations:
            _read_expectation(expectation)
    return Block(first_line, commands, skip)


def _command(line: int, lines: list[str]) -> Command:
    command = Command(line, "\n".join(lines))
    # An expectation may also close the command's own line: `curl ...   # → 204`.
    _, code = _scan(lines[-1], _quote_before(lines))
    trailing = lines[-1][len(code) :].strip()
    if match := SKIP.search(trailing):
        command.skip = match["why"]
    elif trailing.startswith(f"# {ARROW}"):
        command.expectations.append(Expectation(line + len(lines) - 1, trailing.split(ARROW, 1)[1]))
    return command


def _quote_before(lines: list[str]) -> str | None:
    quote = None
    for raw in lines[:-1]:
        quote, _ = _scan(raw, quote)
    return quote


def _scan(line: str, quote: str | None) -> tuple[str | None, str]:
    """The quote still open at the end of ``line`` and the line without its comment."""
    for position, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
            elif char == "\\" and quote == '"':
                continue
        elif char in "'\"":
            quote = char
        elif char == "#" and (position == 0 or line[position - 1] in " \t"):
            return None, line[:position]
    return quote, line


def _read_expectation(expectation: Expectation) -> None:
    text = expectation.text.strip()
    if match := STATUSES.match(text):
        expectation.statuses = {int(code) for code in re.findall(r"\d{3}", match.group(0))}
        text = text[match.end() :].strip()
    if text[:1] in ("{", "["):
        end = _balanced_end(text)
        expectation.value = _loose_json(text[:end], expectation.line)
        expectation.has_value = True
        text = text[end:].strip()
    expectation.rest = text


def _balanced_end(text: str) -> int:
    depth = 0
    in_string = False
    for position, char in enumerate(text):
        if in_string:
            if char == '"' and text[position - 1] != "\\":
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return position + 1
    return len(text)


def _loose_json(text: str, line: int) -> Any:
    # "…" as a whole value stands for anything; a trailing ", …" says more keys follow.
    text = re.sub(r",\s*…\s*(?=[}\]])", "", text)
    text = re.sub(r"(?<=[:\[,])(\s*)…", r'\1"…"', text)
    try:
        return json.loads(text)
    except ValueError as err:
        raise ExpectationError(f"line {line}: the expected answer is not JSON: {err}") from err


def contains(expected: Any, actual: Any) -> bool:
    """Whether ``actual`` has everything ``expected`` names (``…`` matches anything)."""
    if expected == ANY:
        return True
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and contains(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) >= len(expected)
            and all(contains(e, a) for e, a in zip(expected, actual, strict=False))
        )
    if isinstance(expected, str) and ANY in expected:
        pattern = ".*".join(re.escape(part) for part in expected.split(ANY))
        return isinstance(actual, str) and re.fullmatch(pattern, actual, re.DOTALL) is not None
    return bool(expected == actual and type(expected) is type(actual))


# Put before the blocks: records every curl's status and body, and each command's end.
PRELUDE = r"""
curl() {
  local __body __code __rc
  __body=$(mktemp "$__readme_dir/body.XXXXXX")
  __code=$(command curl -o "$__body" -w '%{http_code}' "$@")
  __rc=$?
  printf '%s\t%s\t%s\t%s\n' "$__readme_line" "$__code" "$__rc" "$__body" >>"$__readme_dir/curls"
  cat "$__body"
  return $__rc
}
"""


def script(blocks: list[Block], workdir: Path) -> str:
    """One bash script running every command of ``blocks`` in order."""
    parts = [f"__readme_dir={shlex.quote(str(workdir))}", PRELUDE]
    for block in blocks:
        for command in block.commands:
            if command.skip:
                continue
            number = command.line
            parts.append(
                f"__readme_line={number}\n"
                f"printf '%s\\n' {number} >>\"$__readme_dir/started\"\n"
                f'{{\n{command.text}\n}} >"$__readme_dir/out.{number}" '
                f'2>"$__readme_dir/err.{number}"\n'
                f"printf '%s\\t%s\\n' {number} $? >>\"$__readme_dir/ended\"\n"
            )
    parts.append(
        'for __v in $(compgen -v); do printf "%s=%s\\0" "$__v" "${!__v}"; done'
        ' >"$__readme_dir/variables"'
    )
    return "\n".join(parts)


def run_file(
    path: Path,
    *,
    env: Mapping[str, str],
    cwd: Path,
    workdir: Path,
    text: str | None = None,
    timeout: float = 300,
    substitutions: Mapping[str, str] | None = None,
) -> Outcome:
    """Run the shell blocks of the Markdown file ``path`` (or of ``text``, as if it were
    that file) and return every failure, named by file and line."""
    source = path.read_text() if text is None else text
    name = path.name if path.parent.name != "deploy" else f"deploy/{path.name}"
    try:
        blocks = parse_blocks(source)
    except ExpectationError as err:
        return Outcome([f"{name}: {err}"], [], 0, {})
    skipped = [f"{name}:{block.line}: {block.skip}" for block in blocks if block.skip]
    runnable = [block for block in blocks if not block.skip]
    skipped += [
        f"{name}:{command.line}: {command.skip}"
        for block in runnable
        for command in block.commands
        if command.skip
    ]
    workdir.mkdir(parents=True, exist_ok=True)
    body = script(runnable, workdir)
    for old, new in (substitutions or {}).items():
        body = body.replace(old, new)
    (workdir / "script.sh").write_text(body)
    failures: list[str] = []
    try:
        subprocess.run(
            ["bash", str(workdir / "script.sh")],
            env=dict(env),
            cwd=cwd,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
    except subprocess.TimeoutExpired:
        started = _lines(workdir / "started")
        last = started[-1] if started else "?"
        failures.append(f"{name}:{last}: still running after {timeout:.0f} s")
    failures += _check(name, runnable, workdir, env)
    ran = sum(1 for block in runnable for command in block.commands if not command.skip)
    return Outcome(failures, skipped, ran, _variables(workdir))


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _variables(workdir: Path) -> dict[str, str]:
    path = workdir / "variables"
    if not path.exists():
        return {}
    pairs = (item.split("=", 1) for item in path.read_text().split("\0") if "=" in item)
    return {key: value for key, value in pairs}


def _check(name: str, blocks: list[Block], workdir: Path, env: Mapping[str, str]) -> list[str]:
    ended = dict(line.split("\t") for line in _lines(workdir / "ended"))
    curls: dict[str, list[tuple[int, str]]] = {}
    for record in _lines(workdir / "curls"):
        line, code, _, body_path = record.split("\t", 3)
        curls.setdefault(line, []).append((int(code), Path(body_path).read_text()))
    api = env.get("HERALD_API", "")
    failures = []
    for block in blocks:
        for command in block.commands:
            key = str(command.line)
            if command.skip:
                continue
            where = f"{name}:{command.line}"
            if key not in ended:
                continue  # never reached (the run timed out): reported above
            output = _read(workdir / f"out.{key}")
            problem = _judge(command, int(ended[key]), curls.get(key, []), output, api)
            if problem:
                errors = _read(workdir / f"err.{key}").strip()
                detail = f"\n    stderr: {textwrap.shorten(errors, 600)}" if errors else ""
                failures.append(f"{where}: {problem}\n    $ {_first(command.text)}{detail}")
    return failures


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _first(text: str) -> str:
    first = text.splitlines()[0]
    return first if len(first) < 160 else first[:157] + "..."


def _judge(
    command: Command, exit_status: int, calls: list[tuple[int, str]], output: str, api: str
) -> str | None:
    allowed = set().union(*(e.statuses for e in command.expectations))
    for code, body in calls:
        if code == 0:
            return "the server did not answer (connection refused?)"
        if code >= 400 and code not in allowed:
            return f"answered {code}: {textwrap.shorten(body, 600)}"
    if exit_status != 0:
        return f"exited with status {exit_status}: {textwrap.shorten(output, 300)}"
    for expectation in command.expectations:
        if problem := _expectation_problem(expectation, calls, output, api):
            return f"{problem} (expected at line {expectation.line})"
    return None


def _expectation_problem(
    expectation: Expectation, calls: list[tuple[int, str]], output: str, api: str
) -> str | None:
    answer = calls[-1][1] if calls else output
    if expectation.statuses:
        if not calls:
            return "expected an HTTP status but the command made no curl call"
        if calls[-1][0] not in expectation.statuses:
            return f"answered {calls[-1][0]}, expected {sorted(expectation.statuses)}"
    if expectation.has_value:
        wanted = expectation.value
        if api:
            # The examples name the API where ./scripts/dev puts it.
            wanted = json.loads(json.dumps(wanted).replace("http://localhost:8000", api))
        try:
            actual = json.loads(answer)
        except ValueError:
            return f"the answer is not JSON: {textwrap.shorten(answer, 300)}"
        if not contains(wanted, actual):
            return (
                f"the answer {textwrap.shorten(json.dumps(actual), 600)} lacks "
                f"{json.dumps(wanted, ensure_ascii=False)}"
            )
    elif expectation.rest and not calls and not expectation.statuses:
        wanted_text = expectation.rest.split("  ")[0].strip()
        if wanted_text not in output:
            return f"printed {textwrap.shorten(output, 300)!r}, expected {wanted_text!r}"
    return None


def shell_env(base: Mapping[str, str], venv_bin: Path) -> dict[str, str]:
    """``base`` with the venv's bin off PATH: the examples must name ``.venv/bin/``."""
    path = [p for p in base.get("PATH", "").split(os.pathsep) if Path(p) != venv_bin]
    return {**base, "PATH": os.pathsep.join(path)}
