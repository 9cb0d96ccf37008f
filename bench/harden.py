"""Benchmark: bulwark bootstrap + harden vs a minimal bash baseline, on fresh lab VMs, one run.

    uv run python bench/harden.py [--distro bookworm] [--floor]

Both start from the same fresh lab image (root by key). The baseline does what a typical
hand-written script does (upgrade; install ufw, fail2ban, unattended-upgrades; a deploy user;
ufw rules; an sshd drop-in; a jail.local; dpkg-reconfigure) over one SSH session, with none of
bulwark's checks. Prints both times, their ratio, and bulwark's idempotent re-run time, with
and without Python's bytecode cache (bench/bytecode.py), then where bulwark's time went: the
bootstrap, and per pyinfra phase and operation of the first run and of one warm re-run (read
from the stamps in harden's log).

--floor times, side by side with the same baseline, bulwark's package install alone (its first
run's one apt transaction, as root, nothing else): the part of the first run that no saving in
bulwark's own round trips or checks can take away, so the lowest ratio its package set allows.

--lean (with or without --floor) turns off every setting that installs a package (LEAN: the
accounts' PAM modules, auditd, accounting, package checks, AIDE, chkrootkit), to measure what
that depth costs a first run against the same baseline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bytecode import env_for
from pyinfra.facts.apt import noninteractive_apt

from bulwark.hosts.bootstrap import TrustStore, bootstrap
from bulwark.hosts.deploys.packages import PACKAGES, optional, preseed_for
from bulwark.hosts.harden import timings
from bulwark.hosts.keys import ensure_key
from bulwark.hosts.operations import debconf_answers
from bulwark.hosts.ssh import connect
from bulwark.lab import vm as lab
from bulwark.lab.inventory import host_data, write_inventory
from bulwark.settings.hosts import DeployUser, HardenSettings

BASELINE = r"""
set -e
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get -y -q -o Dpkg::Options::=--force-confold dist-upgrade
apt-get -y -q install ufw fail2ban unattended-upgrades python3-systemd
id deploy >/dev/null 2>&1 || useradd -m -s /bin/bash deploy
install -d -m 700 -o deploy -g deploy /home/deploy/.ssh
cat > /home/deploy/.ssh/authorized_keys
chown deploy: /home/deploy/.ssh/authorized_keys && chmod 600 /home/deploy/.ssh/authorized_keys
echo 'deploy ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/deploy
ufw allow 22/tcp && ufw --force enable
printf 'PermitRootLogin no\nPasswordAuthentication no\n' > /etc/ssh/sshd_config.d/00-hardening.conf
sshd -t && systemctl reload ssh
printf '[sshd]\nenabled = true\nbackend = systemd\n' > /etc/fail2ban/jail.local
systemctl restart fail2ban
echo 'unattended-upgrades unattended-upgrades/enable_auto_updates boolean true' \
  | debconf-set-selections
dpkg-reconfigure -f noninteractive unattended-upgrades
"""


# Every setting that adds a package to the install (packages.optional), off.
LEAN: dict[str, dict[str, bool]] = {
    "accounts": {"pam_tmpdir": False, "password_quality": False},
    "audit": {
        "auditd": False,
        "accounting": False,
        "package_checks": False,
        "file_integrity": False,
        "rootkit_scan": False,
    },
}
SETTINGS: dict[str, dict[str, bool]] = {}  # the bulwark settings of this run: {} or LEAN

STEPS: dict[str, list[tuple[str, float]]] = {}


def timed_harden(
    inventory: Path, env: dict[str, str] | None = None, rerun: bool = True, steps: str = ""
) -> float:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bulwark", "harden", str(inventory), "--yes", "--json"],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"harden failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    if rerun and result["changed"] != 0:
        raise SystemExit(f"a re-run changed something:\n{done.stdout[-3000:]}")
    if steps:
        STEPS[steps] = timings(Path(result["log"]).read_text(encoding="utf-8"))
    return elapsed


def bulwark_arm(vm: lab.LabVM, times: dict[str, float]) -> None:
    key, _ = ensure_key(vm.directory / "operator")
    start = time.monotonic()
    bootstrap(vm.target, vm.root_login(), DeployUser(), key, TrustStore(vm.directory))
    times["bootstrap"] = time.monotonic() - start
    inv = write_inventory(
        vm.directory / "inventory.py",
        {"bench": host_data(vm, user="deploy", key=key.path, bulwark=SETTINGS)},
    )
    times["bulwark"] = time.monotonic() - start + timed_harden(inv, rerun=False, steps="first run")


def baseline_arm(vm: lab.LabVM, times: dict[str, float]) -> None:
    key, _ = ensure_key(vm.directory / "operator")
    start = time.monotonic()
    with connect(vm.target, vm.root_login(), TrustStore(vm.directory).known_hosts) as s:
        s.run(BASELINE, stdin=key.public_line + "\n", timeout=3600)
    times["baseline"] = time.monotonic() - start


def floor_arm(vm: lab.LabVM, times: dict[str, float]) -> None:
    """The install alone, as bare as it gets: bulwark's packages (default settings) and the
    upgrade in the one apt transaction its first run uses, nothing else - the part of bulwark's
    first run no round trip or check of its own can take away."""
    conf = HardenSettings.model_validate(SETTINGS)
    names = " ".join([*PACKAGES, *optional(conf)])
    script = (
        "set -e\nexport DEBIAN_FRONTEND=noninteractive\n"
        f"{debconf_answers(preseed_for(conf))}\napt-get update -q\n"
        f"{noninteractive_apt('dist-upgrade --no-install-recommends')} {names}\n"
    )
    start = time.monotonic()
    with connect(vm.target, vm.root_login(), TrustStore(vm.directory).known_hosts) as s:
        s.run(script, timeout=3600)
    times["floor"] = time.monotonic() - start


Arm = Callable[[lab.LabVM, dict[str, float]], None]


@contextmanager
def side_by_side(
    spec: lab.VMSpec, times: dict[str, float], arm: Arm, name: str
) -> Iterator[lab.LabVM]:
    """Two fresh VMs boot first (not timed), then `arm` (which records times[name]) on the first
    and the baseline on the second run at once, one guest CPU each, so load on this machine
    falls on both alike. Yields the first VM, still running."""
    with lab.booted(spec) as vm_a, lab.booted(spec) as vm_b:
        arms = [
            threading.Thread(target=arm, args=(vm_a, times)),
            threading.Thread(target=baseline_arm, args=(vm_b, times)),
        ]
        for thread in arms:
            thread.start()
        for thread in arms:
            thread.join()
        if not {name, "baseline"} <= set(times):
            raise SystemExit(f"an arm failed: got {sorted(times)}")
        yield vm_a


def floor(spec: lab.VMSpec) -> None:
    """--floor: the baseline script and bulwark's install alone, side by side."""
    times: dict[str, float] = {}
    with side_by_side(spec, times, floor_arm, "floor") as vm_a:
        pass
    print(f"distro:                    {spec.distro} (lab VM, {vm_a.accel.upper()})")
    print(f"bulwark settings:          {'LEAN' if SETTINGS else 'defaults'}")
    print(f"bash baseline:             {times['baseline']:7.1f} s")
    print(f"bulwark's install alone:   {times['floor']:7.1f} s")
    ratio = times["floor"] / times["baseline"]
    print(f"ratio install/baseline:    {ratio:7.2f}  (the floor of bulwark's first-run ratio)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--distro", default="bookworm")
    parser.add_argument(
        "--floor", action="store_true",
        help="time bulwark's package install alone against the baseline, side by side",
    )  # fmt: skip
    parser.add_argument(
        "--lean", action="store_true",
        help="every setting that installs a package off (LEAN), to measure what depth costs",
    )  # fmt: skip
    args = parser.parse_args()
    if args.lean:
        SETTINGS.update(LEAN)
        assert not optional(HardenSettings.model_validate(LEAN)), "LEAN leaves a package on"
    spec = lab.VMSpec(distro=args.distro)
    if args.floor:
        floor(spec)
        return
    times: dict[str, float] = {}
    with side_by_side(spec, times, bulwark_arm, "bulwark") as vm_a:
        inv = vm_a.directory / "inventory.py"
        with tempfile.TemporaryDirectory() as tmp:
            cold = timed_harden(inv, env_for(Path(tmp) / "cold", write=False))
            timed_harden(inv, env_for(Path(tmp) / "warm", write=True))  # fills the cache
            warm = [
                timed_harden(inv, env_for(Path(tmp) / "warm", write=False), steps=f"re-run {n}")
                for n in (1, 2, 3)
            ]

    print(f"distro:                    {args.distro} (lab VM, {vm_a.accel.upper()})")
    print(f"bulwark settings:          {'LEAN' if SETTINGS else 'defaults'}")
    print(f"bash baseline:             {times['baseline']:7.1f} s")
    print(f"bulwark bootstrap+harden:  {times['bulwark']:7.1f} s")
    print(
        f"ratio bulwark/baseline:    {times['bulwark'] / times['baseline']:7.2f}  (target <= 1.0)"
    )
    print(f"idempotent re-run, cold:   {cold:7.1f} s  (no bytecode cache: see bench/bytecode.py)")
    print(
        f"idempotent re-run, warm:   {statistics.median(warm):7.1f} s  median of 3 "
        f"({', '.join(f'{t:.1f}' for t in warm)})  (target <= 10 s)"
    )

    print(f"\nbootstrap (paramiko, root to deploy): {times['bootstrap']:7.1f} s")
    for label in ("first run", "re-run 2"):
        steps = STEPS[label]
        print(f"\nharden {label}, {len(steps)} steps, slowest first (seconds):")
        for name, seconds in sorted(steps, key=lambda step: -step[1])[:25]:
            print(f"  {seconds:7.1f}  {name.removeprefix('bulwark harden | ')}")


if __name__ == "__main__":
    main()
