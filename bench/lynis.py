"""Benchmark: Lynis's hardening index of a host bulwark hardened, by a tool bulwark did not write.

    uv run python bench/lynis.py [--distro bookworm --distro trixie] [--fresh] [--json OUT]

For each distro: a fresh lab VM (a provider's VPS image) is bootstrapped and hardened with the
default settings, then Lynis from Debian's own archive (`apt-get install lynis`) runs
`lynis audit system --quick` inside it, as root. Prints the hardening index, Lynis's warnings,
its suggestions by test id (what it would still change) and the tests that withheld points.
`--fresh` audits an un-hardened VM of the same image side by side, the control figure. Under
TCG a Lynis run takes 15-20 minutes: far too long for CI, so this is run by hand and recorded in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import threading
import time
from pathlib import Path

from bulwark.hosts.bootstrap import TrustStore, bootstrap
from bulwark.hosts.harden import prepare, run_harden
from bulwark.hosts.keys import ensure_key
from bulwark.hosts.ssh import Login, Session, connect
from bulwark.lab import vm as lab
from bulwark.lab.image import DISTROS
from bulwark.lab.inventory import host_data, write_inventory
from bulwark.settings.hosts import DeployUser

# Lynis audits the host as it will be: after AIDE's first baseline (harden builds it in the
# background) is whole. Its log says, test by test, where points were withheld.
LOG_MARK = "@@bulwark-lynis-log"
AUDIT = (
    "export DEBIAN_FRONTEND=noninteractive; "
    "while systemctl is-active --quiet bulwark-aide-init; do sleep 10; done; "
    "apt-get install -y -q lynis >/dev/null && "
    "lynis audit system --quick --no-colors >/var/log/bulwark-lynis.out 2>&1; "
    "lynis --version; cat /var/log/lynis-report.dat; "
    f"echo {LOG_MARK}; grep -E 'Performing test ID|Hardening: assigned' /var/log/lynis.log"
)


def points_withheld(log: str) -> list[str]:
    """Each test that got fewer hardening points than it could, as "TEST-ID got/max"."""
    withheld: list[str] = []
    test = "?"
    for line in log.splitlines():
        if "Performing test ID" in line:
            test = line.split("Performing test ID", 1)[1].split()[0]
        elif match := re.search(r"hardening points \((\d+) of (\d+)\)", line):
            got, most = match.groups()
            if got != most:
                withheld.append(f"{test} {got}/{most}")
    return withheld


def parse_report(version: str, report: str) -> dict[str, object]:
    """The figures a reader wants from lynis-report.dat: index, warnings, suggestions."""
    index = None
    warnings: list[str] = []
    suggestions: list[str] = []
    for line in report.splitlines():
        key, _, value = line.partition("=")
        if key == "hardening_index":
            index = int(value)
        elif key in {"warning[]", "suggestion[]"}:
            test, text, detail, *_ = [*value.split("|"), "", "", ""]
            shown = f"{test} {text}" + (f" ({detail})" if detail not in {"", "-"} else "")
            (warnings if key == "warning[]" else suggestions).append(shown)
    return {
        "lynis": version.strip(),
        "hardening_index": index,
        "warnings": warnings,
        "suggestions": suggestions,
    }


def audit(session: Session) -> dict[str, object]:
    start = time.monotonic()
    out = session.run(AUDIT, sudo=True, timeout=3600).stdout
    out, _, log = out.partition(LOG_MARK)
    version, _, report = out.partition("\n")
    found = parse_report(version, report)
    found["points_withheld"] = points_withheld(log)
    found["seconds"] = round(time.monotonic() - start)
    return found


def hardened_arm(distro: str, results: dict[str, object]) -> None:
    with lab.booted(lab.VMSpec(distro=distro)) as vm:
        key, _ = ensure_key(vm.directory / "operator")
        store = TrustStore(vm.directory)
        bootstrap(vm.target, vm.root_login(), DeployUser(), key, store)
        inventory = write_inventory(
            vm.directory / "inventory.py", {"bench": host_data(vm, user="deploy", key=key.path)}
        )
        start = time.monotonic()
        run = run_harden(inventory, prepare(inventory))
        if not run.ok:
            raise SystemExit(f"{distro}: harden failed; its log: {run.log}")
        harden_seconds = round(time.monotonic() - start)
        with connect(vm.target, Login("deploy", key=key), store.known_hosts) as s:
            results[f"{distro} hardened"] = {"harden_seconds": harden_seconds, **audit(s)}


def fresh_arm(distro: str, results: dict[str, object]) -> None:
    with (
        lab.booted(lab.VMSpec(distro=distro)) as vm,
        connect(vm.target, vm.root_login(), TrustStore(vm.directory).known_hosts) as s,
    ):
        results[f"{distro} fresh"] = audit(s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--distro", action="append", choices=DISTROS)
    parser.add_argument("--fresh", action="store_true", help="Also audit an un-hardened VM.")
    parser.add_argument("--json", type=Path, help="Write the results here too.")
    args = parser.parse_args()
    results: dict[str, object] = {}
    for distro in args.distro or ["bookworm", "trixie"]:
        arms = [threading.Thread(target=hardened_arm, args=(distro, results))]
        if args.fresh:
            arms.append(threading.Thread(target=fresh_arm, args=(distro, results)))
        for arm in arms:
            arm.start()
        for arm in arms:
            arm.join()
    for name, found in results.items():
        assert isinstance(found, dict)
        print(f"{name}: Lynis {found['lynis']} hardening index {found['hardening_index']} "
              f"({found['seconds']} s)")  # fmt: skip
        for warning in found["warnings"]:
            print(f"  warning: {warning}")
        for suggestion in found["suggestions"]:
            print(f"  suggestion: {suggestion}")
        for withheld in found["points_withheld"]:
            print(f"  points withheld: {withheld}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()


if __name__ == "__main__":
    main()
