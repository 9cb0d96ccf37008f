"""Start-up: `bulwark --help` and `bulwark --version` load only the CLI's skeleton. The heavy
libraries (rich's console, pydantic, paramiko, pyinfra, Pulumi, the policy engine) load when a
command that needs them runs, so the first line of output comes in a fraction of a second
(measured in bench/startup.py, recorded in docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("rich.console", "pydantic", "paramiko", "pyinfra", "pulumi", "pulumi_gcp",
         "pulumi_policy", "jinja2", "cryptography", "psycopg", "yaml", "testinfra")  # fmt: skip

PROBE = """
import json, sys
sys.argv = ["bulwark", *json.loads(sys.argv[1])]
from bulwark.__main__ import main
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = sorted({m.split(".")[0] if not m.startswith("rich.console") else m
                for m in sys.modules if m.split(".")[0] in HEAVY_ROOTS or m == "rich.console"})
sys.stderr.write("LOADED " + json.dumps(heavy) + "\\n")
"""


def loaded_by(*args: str) -> tuple[str, list[str]]:
    roots = sorted({m.split(".")[0] for m in HEAVY} - {"rich"})
    code = f"HEAVY_ROOTS = {roots!r}\n" + PROBE
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(list(args))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    line = next(x for x in done.stderr.splitlines() if x.startswith("LOADED "))
    return done.stdout, json.loads(line.removeprefix("LOADED "))


@pytest.mark.parametrize("args", [("--help",), ("--version",)])
def test_help_and_version_load_none_of_the_heavy_libraries(args: tuple[str, ...]) -> None:
    stdout, heavy = loaded_by(*args)
    assert stdout.strip(), "the command printed nothing"
    assert heavy == [], f"bulwark {' '.join(args)} loaded {heavy}"


def test_version_names_bulwark_and_the_engines() -> None:
    stdout, _ = loaded_by("--version")
    versions = dict(line.split() for line in stdout.splitlines())
    assert next(iter(versions)) == "bulwark", stdout
    assert {"pulumi", "pulumi-gcp", "pyinfra", "pytest-testinfra"} <= set(versions), stdout
    assert "not installed" not in stdout


def test_the_probe_sees_a_heavy_import_when_there_is_one() -> None:
    # The guard itself can fail: `settings` renders the settings' documentation with pydantic.
    _, heavy = loaded_by("settings", "--cloud")
    assert "pydantic" in heavy
