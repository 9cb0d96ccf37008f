"""Benchmark: `bulwark plan` for the dev, staging and prod stacks (target: under 5 s together),
`bulwark audit --all` for the three in one process (target: under 2.5 s with bytecode cached),
and `bulwark --help` (target: under 0.5 s).

    uv run python bench/plan.py [--repeat 3]

Each stack is planned by a fresh `bulwark plan --stack S --json` process, the way a user or CI
runs it, and the three medians are summed. Python's bytecode cache decides most of it (about
8 MB of pulumi_gcp source is compiled on an uncached import), so both states are measured in
isolation from the venv's own `__pycache__` folders (cold and warm: see bench/bytecode.py).

Then one `bulwark plan -s dev -s staging -s prod` process (how CI plans every stack), and the
same in-process split into import time and per-stack time.
Sequential, one process at a time, so it stays off the other cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bytecode import env_for

ROOT = Path(__file__).resolve().parents[1]
STACKS = ("dev", "staging", "prod")
IN_PROCESS = """
import json, time
t0 = time.perf_counter()
from bulwark.cloud.plan import run_plan
t1 = time.perf_counter()
runs = {}
for stack in ("dev", "staging", "prod"):
    start = time.perf_counter()
    plan = run_plan(stack)
    runs[stack] = [time.perf_counter() - start, len(plan.resources)]
print(json.dumps({"import": t1 - t0, "runs": runs}))
"""


def timed_plan(stacks: tuple[str, ...], env: dict[str, str]) -> float:
    flags = [arg for stack in stacks for arg in ("--stack", stack)]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bulwark", "plan", *flags, "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"plan {stacks} failed:\n{done.stderr[-2000:]}")
    json.loads(done.stdout)  # a complete plan, not a partial one
    return elapsed


def timed_command(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bulwark", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bulwark {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return elapsed


def measure_commands(label: str, env: dict[str, str], repeat: int) -> dict[str, float]:
    """`bulwark audit --all` (three stacks, one report) and `bulwark --help`, medians."""
    found = {}
    for name, args in (("audit --all", ["audit", "--all", "-f", "json"]), ("--help", ["--help"])):
        times = [timed_command(args, env) for _ in range(repeat)]
        found[name] = statistics.median(times)
        print(f"{label:5} {name:12} " + "  ".join(f"{t:5.2f}" for t in times), flush=True)
    return found


def in_process(env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", IN_PROCESS],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(done.stdout)
    return result


def measure(label: str, env: dict[str, str], repeat: int) -> dict[str, float]:
    medians = {}
    for stack in STACKS:
        times = [timed_plan((stack,), env) for _ in range(repeat)]
        medians[stack] = statistics.median(times)
        print(f"{label:5} {stack:8} " + "  ".join(f"{t:5.2f}" for t in times), flush=True)
    return medians


def measure_together(label: str, env: dict[str, str], repeat: int) -> float:
    times = [timed_plan(STACKS, env) for _ in range(repeat)]
    print(f"{label:5} all      " + "  ".join(f"{t:5.2f}" for t in times), flush=True)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="Runs per stack and state.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bulwark-bench-") as tmp:
        cold_cache, warm_cache = Path(tmp, "cold"), Path(tmp, "warm")
        cold_env = env_for(cold_cache, write=False)
        cold = measure("cold", cold_env, args.repeat)
        cold_all = measure_together("cold", cold_env, args.repeat)
        cold_commands = measure_commands("cold", cold_env, args.repeat)
        fill = env_for(warm_cache, write=True)  # fill the warm cache, untimed
        timed_plan(("dev",), fill)
        timed_command(["audit", "--all", "-f", "json"], fill)
        warm_env = env_for(warm_cache, write=False)
        warm = measure("warm", warm_env, args.repeat)
        warm_all = measure_together("warm", warm_env, args.repeat)
        warm_commands = measure_commands("warm", warm_env, args.repeat)
        together = in_process(warm_env)

    print()
    print("| bytecode | dev | staging | prod | three processes | one process, three stacks |")
    print("|---|---|---|---|---|---|")
    for label, medians, together_s in (("cold", cold, cold_all), ("warm", warm, warm_all)):
        cells = " | ".join(f"{medians[s]:.2f} s" for s in STACKS)
        print(
            f"| {label} | {cells} | {sum(medians.values()):.2f} s {_verdict(sum(medians.values()))}"
            f" | {together_s:.2f} s {_verdict(together_s)} |"
        )
    print()
    print("| bytecode | `bulwark audit --all` (3 stacks) | `bulwark --help` |")
    print("|---|---|---|")
    for label, found in (("cold", cold_commands), ("warm", warm_commands)):
        audit, help_ = found["audit --all"], found["--help"]
        print(
            f"| {label} | {audit:.2f} s {_target(audit, 2.5)} | {help_:.2f} s "
            f"{_target(help_, 0.5)} |"
        )
    runs = together["runs"]
    assert isinstance(runs, dict)
    per_stack = ", ".join(f"{s} {runs[s][0]:.2f} s ({runs[s][1]} resources)" for s in STACKS)
    total = float(together["import"]) + sum(r[0] for r in runs.values())  # type: ignore[arg-type]
    print(
        f"\nOne process, warm: imports {together['import']:.2f} s, then {per_stack}; "
        f"{total:.2f} s in all."
    )


def _target(seconds: float, limit: float) -> str:
    return f"(< {limit} s: {'met' if seconds < limit else 'not met'})"


def _verdict(seconds: float) -> str:
    return "(< 5 s: met)" if seconds < 5 else "(< 5 s: not met)"


if __name__ == "__main__":
    main()
