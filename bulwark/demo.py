"""The demo: a lab VM that looks like a fresh VPS, bootstrapped, hardened and verified as
operators do, then audited with stack dev."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bulwark import dirs
from bulwark.audit import run_audit
from bulwark.errors import BulwarkError
from bulwark.hosts.bootstrap import BootstrapReport, TrustStore, bootstrap
from bulwark.hosts.harden import HardenRun, Tracker, prepare, run_harden
from bulwark.hosts.keys import ensure_key
from bulwark.lab import vm as lab
from bulwark.lab.inventory import host_data, write_inventory
from bulwark.lab.tools import ensure_tools
from bulwark.policy.evaluate import Audit
from bulwark.policy.report import render_html
from bulwark.settings.hosts import DeployUser
from bulwark.verify.results import Report
from bulwark.verify.run import from_inventory, run_verify

Progress = Callable[[str], None]


@dataclass
class DemoResult:
    vm: lab.LabVM
    first: BootstrapReport
    second: BootstrapReport
    host_key_confirmed: bool
    operator_key: Path
    harden: HardenRun
    verify: Report
    audit: Audit
    audit_html: Path

    @property
    def root_login_refused(self) -> bool:
        (host,) = self.verify.hosts
        return any(c.id == "probe-root-login-refused" and c.status == "pass" for c in host.controls)

    def as_dict(self) -> dict[str, object]:
        return {
            "vm": {"name": self.vm.name, "distro": self.vm.distro, "ssh_port": self.vm.ssh_port},
            "operator_key": str(self.operator_key),
            "bootstrap": self.first.as_dict(),
            "rerun": self.second.as_dict(),
            "host_key_confirmed": self.host_key_confirmed,
            "harden": self.harden.as_dict(),
            "root_login_refused": self.root_login_refused,
            "verify": json.loads(self.verify.to_json()),
            "audit": {
                "ok": self.audit.ok,
                "summary": self.audit.summary,
                "sections": [{"name": s.name, "summary": s.summary} for s in self.audit.sections],
                "html": str(self.audit_html),
            },
        }


DEMO_STACK = "dev"


def demo_audit(
    verify: Report, out_dir: Path, stacks_dir: Path = Path("stacks")
) -> tuple[Audit, Path]:
    """The audit the demo ends with: stack dev (policy rules on its mock run, offline) and the
    demo host's verification results, in one report; the HTML goes to `out_dir`."""
    audit = run_audit([DEMO_STACK], host_reports=[verify], stacks_dir=stacks_dir,
                      policies_dir=stacks_dir.parent / "policies")  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    html = out_dir / "audit.html"
    html.write_text(render_html(audit), encoding="utf-8")
    return audit, html


def run_demo(
    spec: lab.VMSpec,
    *,
    keep: bool = False,
    progress: Progress | None = None,
    detail: Progress | None = None,
) -> DemoResult:
    """Boot a lab VPS, bootstrap it (twice: the second is a no-op), check the pinned host key,
    harden it, and verify it (controls from inside, probes from outside).

    `progress` hears each step as it starts; `detail`, what happens within one (the area being
    hardened, a control that failed).

    The VM is stopped afterwards unless `keep`; the operator key lives in the demo workspace,
    never in the user's ~/.ssh.
    """
    say = progress or (lambda _msg: None)
    within = detail or (lambda _msg: None)
    ensure_tools()
    workspace = dirs.state_dir() / "demo"
    deploy = DeployUser(key_file=workspace / "operator_ed25519")
    key, _ = ensure_key(deploy.key_path)
    vm = lab.start(spec, detach=keep, progress=say)
    try:
        store = TrustStore(vm.directory)
        say(f"bootstrapping {vm.name} as root ({spec.auth} login)")
        first = bootstrap(vm.target, vm.root_login(), deploy, key, store)
        say("bootstrapping again: nothing should change")
        second = bootstrap(vm.target, vm.root_login(), deploy, key, store)
        pinned = first.proof.host_key_fingerprint if first.proof else ""
        confirmed = pinned in vm.host_key_fingerprints.values()
        say("hardening with pyinfra (several minutes under emulation: apt dominates)")
        inventory = write_inventory(
            vm.directory / "inventory.py",
            {vm.name: host_data(vm, user=deploy.name, key=deploy.key_path)},
        )
        hosts = prepare(inventory)
        tracker = Tracker([h.name for h in hosts])

        def on_line(line: str) -> None:
            area = tracker.area
            if tracker.feed(line) and tracker.area != area:
                within(f"{tracker.area} ({tracker.done.get(vm.name, 0)} operations done)")

        harden = run_harden(inventory, hosts, on_line=on_line)
        if not harden.ok:
            failed = ", ".join(f"{c.area}: {c.operation}" for c in harden.hosts[0].failed)
            raise BulwarkError(f"hardening {vm.name} failed ({failed}); its log: {harden.log}")
        say("verifying: controls from inside, probes from outside (root login, passwords, ports)")
        probe_keys = [vm.root_key_path] if spec.auth == "key" else []

        def on_event(event: dict[str, object]) -> None:
            if event.get("status") in {"fail", "error"}:
                within(f"{event['control']}: {event['status']}")

        report = run_verify(
            from_inventory(inventory),
            probe_keys=probe_keys,
            inventory=inventory,
            on_event=on_event,
        )
    except BaseException:
        lab.stop(vm)
        raise
    if not keep:
        lab.stop(vm)
    say(f"auditing stack {DEMO_STACK} (offline) with the host's results")
    audit, html = demo_audit(report, workspace)
    return DemoResult(vm, first, second, confirmed, deploy.key_path, harden, report, audit, html)
