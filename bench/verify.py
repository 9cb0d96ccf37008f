"""Benchmark: `bulwark verify` on one hardened lab host, and why it reads the host in one command.

    uv run python bench/verify.py [--distro bookworm] [--runs 3]

Boots a fresh lab VM, bootstraps and hardens it (not timed), then times the full `bulwark
verify` (trust check, every control, the outside probes; the ban probe is opt-in and not
included) several times. Side by side over one multiplexed SSH connection it also times the
snapshot read as one remote command vs one command per source (what a suite that asks the host
per check would pay) and prints the ratio.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bytecode import env_for

from bulwark.hosts.bootstrap import TrustStore, bootstrap
from bulwark.hosts.keys import ensure_key
from bulwark.lab import vm as lab
from bulwark.lab.inventory import host_data, write_inventory
from bulwark.settings.hosts import DeployUser
from bulwark.verify import run
from bulwark.verify.state import UNKNOWN_USER, early_parts, snapshot_command, snapshot_parts

# Lab connections all come from 10.0.2.2: no SSH rate limit, and the operator is ignored by
# fail2ban (the probes' "Invalid user" lines would otherwise add up over repeated runs).
SETTINGS = {"firewall": {"ssh_rate_limit": False}, "fail2ban": {"ignoreip": ["10.0.2.2"]}}


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    # A hardened host passes everything applicable: verify must exit 0, or the timing is of a
    # run that did not prove anything. A snapshot part may exit 1 or 2 (grep, awk on a missing
    # file); 255 is ssh itself failing.
    if done.returncode == 255 or (cmd[1] == "verify" and done.returncode != 0):
        raise SystemExit(f"{cmd[:3]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--distro", default="bookworm")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with lab.booted(lab.VMSpec(distro=args.distro, forwards=(8080,))) as vm:
        key, _ = ensure_key(vm.directory / "operator")
        bootstrap(vm.target, vm.root_login(), DeployUser(), key, TrustStore(vm.directory))
        data = host_data(vm, user="deploy", key=key.path, bulwark=SETTINGS)
        inv = write_inventory(vm.directory / "inventory.py", {"bench": data})
        exe = str(Path(sys.executable).with_name("bulwark"))
        if subprocess.run([exe, "harden", str(inv)], capture_output=True, check=False).returncode:
            raise SystemExit("harden failed")
        with tempfile.TemporaryDirectory() as cache:
            cold = timed([exe, "verify", str(inv)], env_for(Path(cache, "cold"), write=False))
            timed([exe, "verify", str(inv)], env_for(Path(cache, "warm"), write=True))  # fills it
            warm = env_for(Path(cache, "warm"), write=False)
            verify = [timed([exe, "verify", str(inv)], warm) for _ in range(args.runs)]

        (target,) = run.from_inventory(inv)
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "ssh_config"
            config.write_text(run.ssh_config({"bench": target}, Path(tmp)))
            ssh = ["ssh", "-F", str(config), "bench"]
            subprocess.run([*ssh, "true"], check=True)  # the master connection
            parts = early_parts() | snapshot_parts(["root", "deploy", UNKNOWN_USER])
            one = timed([*ssh, "sudo sh -c " + shlex.quote(snapshot_command(parts))])
            per_part = {n: timed([*ssh, "sudo sh -c " + shlex.quote(c)]) for n, c in parts.items()}
            each = sum(per_part.values())
            subprocess.run([*ssh, "-O", "exit"], capture_output=True, check=False)

    print(f"distro:                        {args.distro} (lab VM, {vm.accel.upper()})")
    print(f"bulwark verify, cold bytecode: {cold:6.1f} s  (see bench/bytecode.py)")
    print(
        f"bulwark verify, warm bytecode: {statistics.median(verify):6.1f} s median of "
        f"{args.runs} ({', '.join(f'{t:.1f}' for t in verify)})  (target < 15 s)"
    )
    print(f"snapshot, one command:         {one:6.1f} s")
    print(f"snapshot, {len(parts)} commands:          {each:6.1f} s")
    print(f"ratio per-source / one:        {each / one:6.2f}")
    slowest = sorted(per_part.items(), key=lambda item: -item[1])[:10]
    print("slowest parts (each its own command): " + ", ".join(f"{n} {t:.2f}" for n, t in slowest))


if __name__ == "__main__":
    main()
