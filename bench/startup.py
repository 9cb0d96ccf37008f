"""Benchmark: time to the first line of output of each bulwark command (target: under 0.5 s
on the 2-core reference machine), side by side with the interpreter's own start-up.

    uv run python bench/startup.py [--repeat 7]

Every command runs as a user runs it (the venv's `bulwark` script, bytecode cached), with
stdout and stderr on one pipe; the clock stops at the first line, whichever stream it is on.
Commands that would touch a host are given input they refuse before contact (the refusal is
their first line), so nothing leaves this machine. Sequential, one process at a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BULWARK = str(Path(sys.executable).with_name("bulwark"))

COMMANDS: list[tuple[str, list[str]]] = [
    ("python -c pass (control)", [sys.executable, "-c", "pass"]),
    ("python -c 'import typer' (control)", [sys.executable, "-c", "import typer"]),
    ("bulwark --help", [BULWARK, "--help"]),
    ("bulwark --version", [BULWARK, "--version"]),
    ("bulwark plan --help", [BULWARK, "plan", "--help"]),
    ("bulwark harden --help", [BULWARK, "harden", "--help"]),
    ("bulwark settings", [BULWARK, "settings"]),
    ("bulwark lab list", [BULWARK, "lab", "list"]),
    ("bulwark plan --stack dev (first line)", [BULWARK, "plan", "--stack", "dev"]),
    ("bulwark audit --stack dev (first line)", [BULWARK, "audit", "--stack", "dev"]),
    ("bulwark bootstrap (no credential)", [BULWARK, "bootstrap", "203.0.113.9"]),
    ("bulwark harden (missing inventory)", [BULWARK, "harden", "nosuch.py"]),
    ("bulwark verify (no known_hosts)", [BULWARK, "verify", "deploy@203.0.113.9",
                                          "--known-hosts", "nosuch"]),
    ("bulwark pooler check (closed port)", [BULWARK, "pooler", "check",
                                             "postgresql://u@127.0.0.1:1/db"]),
    ("bulwark lab down (no such VM)", [BULWARK, "lab", "down", "nosuch"]),
]  # fmt: skip


def first_line(argv: list[str], cwd: Path) -> tuple[float, float, str]:
    """Seconds to the first line, seconds to exit, and that line."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    first = time.perf_counter() - start
    proc.stdout.read()
    proc.wait()
    return first, time.perf_counter() - start, line.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        # An empty lab state: `lab list` reads no VMs of the user's.
        os.environ["BULWARK_STATE_DIR"] = state
        control = None
        print(f"{'command':44} {'first line':>10} {'exit':>7} {'x control':>9}  first line")
        for name, argv in COMMANDS:
            first_line(argv, ROOT)  # warm the bytecode and the page cache
            runs = [first_line(argv, ROOT) for _ in range(args.repeat)]
            median_first = statistics.median(r[0] for r in runs)
            median_exit = statistics.median(r[1] for r in runs)
            control = control or median_first
            ratio = median_first / control
            shown = runs[0][2][:50]
            print(f"{name:44} {median_first:9.2f}s {median_exit:6.2f}s {ratio:8.1f}x  {shown}")


if __name__ == "__main__":
    main()
