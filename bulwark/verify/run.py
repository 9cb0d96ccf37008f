"""`bulwark verify`: check pinned host keys, then run the control suite under pytest (testinfra's
ssh backend, one multiplexed connection per host), and collect the results."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bulwark.errors import BulwarkError, ConfigError
from bulwark.hosts import inventory
from bulwark.settings.hosts import harden_settings
from bulwark.verify.controls import Control
from bulwark.verify.results import ControlResult, HostResult, Report

TRUST = Control(
    id="trust-host-key-pinned",
    title="The host presents the key pinned at bootstrap",
    family="trust",
    rationale="Verification of an impostor proves nothing; an unknown or changed key fails.",
)


@dataclass(frozen=True)
class VerifyTarget:
    alias: str
    hostname: str
    port: int
    user: str
    key: Path | None
    known_hosts: Path
    settings: dict[str, object] = field(default_factory=dict)
    forwarded: dict[int, int] = field(default_factory=dict)


def from_inventory(path: Path, limit: str | None = None) -> list[VerifyTarget]:
    """Targets from a pyinfra inventory: its SSH details, pinned keys and declared settings."""
    targets = []
    for h in inventory.load(path, limit):
        targets.append(
            VerifyTarget(
                alias=h.name,
                hostname=h.target.host,
                port=h.target.port,
                user=h.user,
                key=h.key_file,
                known_hosts=h.known_hosts,
                settings=h.settings.model_dump(mode="json"),
                forwarded=h.forwarded,
            )
        )
    return targets


def from_spec(spec: str, *, key: Path | None, known_hosts: Path) -> VerifyTarget:
    """A target from `user@host[:port]`, checked against the default settings."""
    user, sep, rest = spec.rpartition("@")
    if not sep or not user or not rest:
        raise ConfigError(f"host {spec!r}: write it as user@host[:port], or pass an inventory")
    hostname, _, port = rest.partition(":")
    if port and not port.isdigit():
        raise ConfigError(f"host {spec!r}: port {port!r} is not a number")
    if key is not None and not key.is_file():
        raise ConfigError(f"--key {key} does not exist")
    return VerifyTarget(
        alias=hostname,
        hostname=hostname,
        port=int(port or 22),
        user=user,
        key=key,
        known_hosts=known_hosts,
        settings=harden_settings(None, where=hostname).model_dump(mode="json"),
    )


def ssh_config(targets: list[VerifyTarget], control_dir: Path) -> str:
    """One Host block per target: strict host key checking against the pinned known_hosts, keys
    only, and a control master so the whole suite shares one connection."""
    blocks = []
    for t in targets:
        lines = [
            f"Host {t.alias}",
            f"  HostName {t.hostname}",
            f"  Port {t.port}",
            f"  User {t.user}",
            f"  UserKnownHostsFile {t.known_hosts.resolve()}",
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  BatchMode yes",
            "  PasswordAuthentication no",
            "  KbdInteractiveAuthentication no",
            "  ControlMaster auto",
            f"  ControlPath {control_dir}/%C",
            "  ControlPersist 300",
            "  ConnectTimeout 20",
        ]
        if t.key is not None:
            lines += [f"  IdentityFile {t.key.resolve()}", "  IdentitiesOnly yes"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def check_trust(target: VerifyTarget, config: Path) -> ControlResult:
    """Open the host's control connection; OpenSSH refuses it on an unknown or changed key."""
    done = subprocess.run(
        ["ssh", "-F", str(config), target.alias, "true"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    status = "pass" if done.returncode == 0 else "fail"
    evidence = None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip() and "@@@" not in line]
        evidence = " ".join(lines[:3]) or f"ssh exited {done.returncode}"
    return ControlResult(
        id=TRUST.id,
        title=TRUST.title,
        family=TRUST.family,
        status=status,  # type: ignore[arg-type]
        rationale=TRUST.rationale,
        references=TRUST.references,
        evidence=evidence,
    )


def run_verify(
    targets: list[VerifyTarget],
    *,
    json_out: Path | None = None,
    junit_out: Path | None = None,
    ban_probe: bool = False,
    probe_keys: list[Path] | None = None,
    select: str | None = None,
) -> Report:
    """Verify every target; the Report has one HostResult per target, trust control first."""
    if shutil.which("ssh") is None:
        raise ConfigError(
            "bulwark verify connects with the OpenSSH client, which is not installed: "
            "`sudo apt-get install openssh-client`"
        )
    for key in probe_keys or []:
        if not key.is_file():
            raise ConfigError(f"--probe-key {key} does not exist")
    with tempfile.TemporaryDirectory(prefix="bulwark-verify-") as tmp:
        work = Path(tmp)
        config = work / "ssh_config"
        config.write_text(ssh_config(targets, work))
        trusted, report = [], Report()
        for t in targets:
            result = check_trust(t, config)
            report.hosts.append(HostResult(host=t.alias, controls=[result]))
            if result.status == "pass":
                trusted.append(t)
        try:
            if trusted:
                suite = _run_suite(trusted, work, config, ban_probe, probe_keys, select)
                _merge(report, suite, trusted, select)
        finally:
            for t in targets:
                subprocess.run(
                    ["ssh", "-F", str(config), "-O", "exit", t.alias],
                    capture_output=True,
                    check=False,
                    timeout=30,
                )
    if json_out is not None:
        report.write(json_out)
    if junit_out is not None:
        junit_out.write_text(report.to_junit())
    return report


def _merge(report: Report, suite: Report, trusted: list[VerifyTarget], select: str | None) -> None:
    """Add the suite's results to each host's trust result; a trusted host with no control
    result was not verified at all, and that must not read as a pass."""
    for host in suite.hosts:
        report.host(host.host).controls.extend(host.controls)
    for t in trusted:
        if len(report.host(t.alias).controls) == 1:  # the trust check alone
            selected = f" (-k {select!r} selects none)" if select else ""
            raise BulwarkError(f"{t.alias}: no control ran{selected}: nothing was verified")


def _run_suite(
    targets: list[VerifyTarget],
    work: Path,
    config: Path,
    ban_probe: bool,
    probe_keys: list[Path] | None,
    select: str | None,
) -> Report:
    meta = {
        t.alias: {
            "settings": t.settings,
            "forwarded": {str(k): v for k, v in t.forwarded.items()},
            "probe_keys": [str(p) for p in probe_keys or []],
        }
        for t in targets
    }
    (work / "hosts.json").write_text(json.dumps(meta))
    (work / "pytest.ini").write_text("[pytest]\n")  # none of the caller's pytest config
    results = work / "results.json"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "--pyargs",
        "bulwark.verify.suite",
        "-c",
        str(work / "pytest.ini"),
        "--rootdir",
        str(work),
        "-p",
        "no:cacheprovider",
        "-q",
        "--no-header",
        "--tb=no",
        "--hosts",
        ",".join(f"ssh://{t.alias}" for t in targets),
        "--ssh-config",
        str(config),
        "--sudo",
        "--bulwark-hosts",
        str(work / "hosts.json"),
        "--bulwark-json",
        str(results),
    ]
    cmd += ["--bulwark-ban-probe"] if ban_probe else []
    cmd += ["-k", select] if select else []
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=work)
    # pytest: 0 all passed, 1 some failed; anything else (interrupted, internal or usage error,
    # nothing collected) means the suite itself did not run as it should.
    if done.returncode not in (0, 1) or not results.is_file():
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise BulwarkError(
            f"the verification suite did not run (pytest exit {done.returncode}):\n{tail}"
        )
    return Report.read(results)
