"""Start-up: help and --version load only the CLI's skeleton, and a command that has work to do
says so before the heavy libraries (rich's console, pydantic, paramiko, pyinfra, Pulumi, the
policy engine) load, so the first line of output comes in a fraction of a second (measured in
bench/startup.py, recorded in docs/benchmarks.md). This also holds typer below 0.29, which
builds a pydantic TypeAdapter for every parameter before any command runs."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

HEAVY = ("rich.console", "pydantic", "paramiko", "pyinfra", "pulumi", "pulumi_gcp",
         "pulumi_policy", "jinja2", "cryptography", "psycopg", "yaml", "testinfra")  # fmt: skip

PROBE = """
import json, sys

def heavy():
    return sorted({m.split(".")[0] if not m.startswith("rich.console") else m
                   for m in sys.modules if m.split(".")[0] in HEAVY_ROOTS or m == "rich.console"})

class FirstLine:  # what was loaded when the command first wrote to stdout or stderr
    seen = None
    def __init__(self, stream):
        self.stream = stream
    def write(self, text):
        if FirstLine.seen is None and text:
            FirstLine.seen = heavy()
        return self.stream.write(text)
    def isatty(self):
        return False
    def __getattr__(self, name):
        return getattr(self.stream, name)

real_err = sys.stderr
sys.stdout, sys.stderr = FirstLine(sys.stdout), FirstLine(sys.stderr)
sys.argv = ["bulwark", *json.loads(sys.argv[1])]
from bulwark.__main__ import main
try:
    main()
except SystemExit as exc:
    code = exc.code
real_err.write("LOADED " + json.dumps([heavy(), FirstLine.seen]) + "\\n")
"""


def probe(*args: str) -> tuple[str, list[str], list[str] | None]:
    """stdout, the heavy modules loaded by the end, and those loaded at the first output."""
    roots = sorted({m.split(".")[0] for m in HEAVY} - {"rich"})
    code = f"HEAVY_ROOTS = {roots!r}\n" + PROBE
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(list(args))],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    line = next(x for x in done.stderr.splitlines() if x.startswith("LOADED "))
    at_end, at_first = json.loads(line.removeprefix("LOADED "))
    return done.stdout, at_end, at_first


def loaded_by(*args: str) -> tuple[str, list[str]]:
    stdout, at_end, _ = probe(*args)
    return stdout, at_end


def commands() -> list[tuple[str, ...]]:
    """Every command, by its path: ("lab", "up")."""
    import typer.main  # noqa: PLC0415

    from bulwark.cli import app  # noqa: PLC0415

    found: list[tuple[str, ...]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        if isinstance(subs := getattr(command, "commands", None), dict):
            for name, sub in subs.items():
                walk(sub, (*path, name))
        else:
            found.append(path)

    walk(typer.main.get_command(app), ())
    return found


@pytest.mark.parametrize("args", [("--help",), ("--version",)])
def test_help_and_version_load_none_of_the_heavy_libraries(args: tuple[str, ...]) -> None:
    stdout, heavy = loaded_by(*args)
    assert stdout.strip(), "the command printed nothing"
    assert heavy == [], f"bulwark {' '.join(args)} loaded {heavy}"


@pytest.mark.parametrize("path", commands(), ids=" ".join)
def test_every_commands_help_loads_none_of_the_heavy_libraries(path: tuple[str, ...]) -> None:
    stdout, heavy = loaded_by(*path, "--help")
    usage = stdout.splitlines()[0]
    assert usage.startswith(f"Usage: bulwark {' '.join(path)} "), stdout[:200]
    assert "{" not in usage, f"arguments are written as click writes them: {usage}"
    assert heavy == [], f"bulwark {' '.join(path)} --help loaded {heavy}"


# Input each command refuses after its first line (or, for lab, answers at once): nothing here
# reaches a host but 127.0.0.1's closed port 1.
FIRST_LINES = {
    "plan": ("plan", "--stack", "nosuch"),
    "audit": ("audit", "--stack", "nosuch"),
    "bootstrap": ("bootstrap", "203.0.113.9"),
    "harden": ("harden", "nosuch.py"),
    "verify": ("verify", "deploy@203.0.113.9", "--known-hosts", "nosuch"),
    "pooler check": ("pooler", "check", "postgresql://u@127.0.0.1:1/db"),
    "lab list": ("lab", "list"),
    "lab down": ("lab", "down", "nosuch"),
}


@pytest.mark.parametrize("args", FIRST_LINES.values(), ids=FIRST_LINES.keys())
def test_a_command_says_its_first_line_before_the_heavy_libraries_load(
    args: tuple[str, ...],
) -> None:
    _, _, at_first = probe(*args)
    assert at_first is not None, f"bulwark {' '.join(args)} printed nothing"
    engines = [m for m in at_first if m != "rich.console"]  # a result or error may use rich
    assert engines == [], f"bulwark {' '.join(args)}: {engines} loaded before its first line"


def test_version_names_bulwark_and_the_engines() -> None:
    stdout, _ = loaded_by("--version")
    versions = dict(line.split() for line in stdout.splitlines())
    assert next(iter(versions)) == "bulwark", stdout
    assert {"pulumi", "pulumi-gcp", "pyinfra", "pytest-testinfra"} <= set(versions), stdout
    assert "not installed" not in stdout


def test_the_probe_sees_a_heavy_import_when_there_is_one() -> None:
    # The guards themselves can fail: `settings` renders its table from the pydantic models,
    # and a plan goes on to load its settings once the first line is out.
    _, heavy, at_first = probe("settings", "--cloud")
    assert "pydantic" in heavy
    assert at_first is not None
    assert "pydantic" in at_first
    _, heavy, at_first = probe(*FIRST_LINES["plan"])
    assert "pydantic" in heavy
    assert at_first == []
