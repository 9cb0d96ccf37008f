"""`bulwark verify`: check pinned host keys, then run the control suite under pytest (testinfra's
ssh backend, one multiplexed connection per host), and collect the results."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from bulwark.errors import BulwarkError, ConfigError
from bulwark.hosts import inventory
from bulwark.hosts.keys import load_key
from bulwark.hosts.safety import vet
from bulwark.hosts.ssh import Target
from bulwark.settings.endpoints import split_target
from bulwark.settings.hosts import harden_settings
from bulwark.settings.load import repo_relative
from bulwark.verify.controls import Control
from bulwark.verify.probes import RATE_LIMIT_PAUSE
from bulwark.verify.results import ControlResult, HostResult, Report

TRUST = Control(
    id="trust-host-key-pinned",
    title="The host presents the key pinned at bootstrap",
    family="trust",
    rationale="Verification of an impostor proves nothing; an unknown or changed key fails.",
)


OnEvent = Callable[[dict[str, object]], None]  # verify's progress, per host


@dataclass(frozen=True)
class VerifyTarget:
    alias: str  # the name reports show: the inventory's host name, or the spec's host
    hostname: str
    port: int
    user: str
    key: Path | None
    known_hosts: Path
    settings: dict[str, object] = field(default_factory=dict)
    forwarded: dict[int, int] = field(default_factory=dict)
    # The address the self-target guard vetted (None: not vetted yet; run_verify does it).
    address: str | None = None

    @property
    def target(self) -> Target:
        return Target(self.hostname, self.port, address=self.address)


def from_inventory(path: Path, limit: str | None = None) -> list[VerifyTarget]:
    """Targets from a pyinfra inventory: its SSH details, pinned keys and declared settings."""
    targets = []
    for h in inventory.load(path, limit):
        if h.key_file is not None:
            load_key(h.key_file)  # exists, 0600, a key: before any connection
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
    """A target from `user@host[:port]` (IPv6 as `user@[2001:db8::1]:22`), checked against the
    default settings."""
    try:
        user, hostname, port = split_target(spec)
    except ValueError as exc:
        raise ConfigError(f"target {spec!r}: {exc} (or pass an inventory)") from None
    if key is not None:
        load_key(key)  # exists, 0600, a key: before any connection
    return VerifyTarget(
        alias=hostname,
        hostname=hostname,
        port=port or 22,
        user=user,
        key=key,
        known_hosts=known_hosts,
        settings=harden_settings(None, where=hostname).model_dump(mode="json"),
    )


def check_selection(select: str) -> None:
    """`-k`: a pytest expression over control names (pytest's own parser judges it)."""
    from _pytest.mark.expression import Expression  # noqa: PLC0415 - pytest only for verify

    try:
        Expression.compile(select)
    except SyntaxError as exc:
        raise ConfigError(
            f"-k {select!r} is not a selection ({exc.msg}): use control names with and, or, "
            "not and parentheses, e.g. -k 'ssh and not banner'"
        ) from None


def check_known_hosts(targets: list[VerifyTarget]) -> None:
    """Every target's pinned host keys exist: verify trusts nothing else."""
    for t in targets:
        if not t.known_hosts.is_file():
            raise ConfigError(
                f"{t.alias}: known_hosts {t.known_hosts} does not exist: pass the file "
                f"`bulwark bootstrap` pinned the host key in (--known-hosts, or the inventory's "
                "ssh_known_hosts_file)"
            )


def _safe_dir(work: Path) -> Path:
    """The working folder goes into ssh_config as it is: refuse anything OpenSSH would split
    or expand (TMPDIR is the user's to set)."""
    if not re.fullmatch(r"[A-Za-z0-9_./-]+", str(work)):
        raise ConfigError(
            f"TMPDIR {work.parent}: OpenSSH cannot carry this path in a config file: set "
            "TMPDIR to a folder named with letters, digits, '.', '_', '-' and '/' only"
        )
    return work


def ssh_config(targets: dict[str, VerifyTarget], work: Path) -> str:
    """One Host block per target (keyed by bulwark's own alias for it): strict host key checking
    against the pinned known_hosts, keys only, and a control master so the whole suite shares one
    connection.

    Only values bulwark made or validated reach the file: its own aliases, validated host names,
    addresses, users and ports, and links in its own folder to the key and known_hosts files
    (so no user-given path is ever parsed by OpenSSH). The connection goes to the vetted address;
    HostKeyAlias keeps the pinned key looked up under the name bootstrap pinned it as."""
    blocks = []
    for alias, t in targets.items():
        known = _link(work / f"{alias}.known_hosts", t.known_hosts)
        lines = [
            f"Host {alias}",
            f"  HostName {t.address or t.hostname}",
            f"  HostKeyAlias {t.target.known_hosts_name}",
            f"  Port {t.port}",
            f"  User {t.user}",
            f"  UserKnownHostsFile {known}",
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  BatchMode yes",
            "  PasswordAuthentication no",
            "  KbdInteractiveAuthentication no",
            "  ControlMaster auto",
            f"  ControlPath {work}/%C",
            "  ControlPersist 300",
            "  ConnectTimeout 20",
        ]
        if t.key is not None:
            key = _link(work / f"{alias}.key", t.key)
            lines += [f"  IdentityFile {key}", "  IdentitiesOnly yes"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _link(link: Path, to: Path) -> Path:
    if not link.is_symlink():
        link.symlink_to(to.resolve())
    return link


# How OpenSSH says why `ssh host true` failed (OpenSSH 8.x-10.x client messages).
HOST_KEY_REFUSED = ("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED")
AUTH_REFUSED = "Permission denied"
# A connection refused, reset, closed or left without a banner may be UFW's rate limit (a
# source's 6th new connection within 30 s, refused tries counted) or sshd's MaxStartups: worth
# one more try once the limit's window has passed (RATE_LIMIT_PAUSE), and no sooner.
TRANSIENT = ("refused", "reset", "closed", "timed out")
TRUST_RETRY_PAUSES = (RATE_LIMIT_PAUSE,)


def check_trust(target: VerifyTarget, alias: str, config: Path) -> ControlResult:
    """Open the host's control connection; OpenSSH refuses it on an unknown or changed key.

    Only a key problem fails the control. A host that cannot be reached, or refuses the login,
    proves nothing about its key: that is an error (with a hint), never a failed control."""
    for pause in (*TRUST_RETRY_PAUSES, None):
        done = subprocess.run(
            ["ssh", "-F", str(config), alias, "true"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        lines = [line for line in done.stderr.splitlines() if line.strip() and "@@@" not in line]
        said = " ".join(lines[:3]) or f"ssh exited {done.returncode}"
        if done.returncode == 0 or any(m in done.stderr for m in HOST_KEY_REFUSED):
            break
        if pause is None or not any(m in done.stderr for m in TRANSIENT):
            return _trust_result("error", reason=_unreachable(target, said))
        time.sleep(pause)
    if done.returncode == 0:
        return _trust_result("pass")
    return _trust_result("fail", evidence=said)


def _unreachable(t: VerifyTarget, said: str) -> str:
    if AUTH_REFUSED in said:
        return (
            f"{t.user}@{t.target} refused the login ({said}): check the user and key "
            "(--key, or the inventory's ssh_user and ssh_key)"
        )
    return (
        f"cannot reach {t.target} over SSH ({said}): check the address and port and that sshd "
        "runs; if this machine was banned by fail2ban, from another address run "
        f"`sudo fail2ban-client status sshd` on the host (`sudo fail2ban-client set sshd "
        "unbanip <address>` lifts it)"
    )


def _trust_result(
    status: str, *, evidence: str | None = None, reason: str | None = None
) -> ControlResult:
    return ControlResult(
        id=TRUST.id,
        title=TRUST.title,
        family=TRUST.family,
        status=status,  # type: ignore[arg-type]
        rationale=TRUST.rationale,
        references=TRUST.references,
        evidence=evidence,
        reason=reason,
    )


def preflight(
    targets: list[VerifyTarget], *, probe_keys: list[Path] | None = None, select: str | None = None
) -> dict[str, VerifyTarget]:
    """Everything that can be known before a connection: the OpenSSH client, the keys, the
    selection, the pinned host keys, and that no target is this machine. Returns the targets by
    bulwark's alias for each, with the address the guard vetted."""
    if shutil.which("ssh") is None:
        raise ConfigError(
            "bulwark verify connects with the OpenSSH client, which is not installed: "
            "`sudo apt-get install openssh-client`"
        )
    for key in probe_keys or []:
        load_key(key)
    if select is not None:
        check_selection(select)
    check_known_hosts(targets)
    vetted = {}
    for i, t in enumerate(targets):
        try:
            vetted[f"h{i}"] = replace(t, address=vet(t.target).address)
        except ConfigError as exc:
            raise ConfigError(f"{t.alias}: {exc}") from None
    return vetted


def run_verify(
    targets: list[VerifyTarget],
    *,
    json_out: Path | None = None,
    junit_out: Path | None = None,
    ban_probe: bool = False,
    probe_keys: list[Path] | None = None,
    select: str | None = None,
    inventory: Path | None = None,
    on_event: OnEvent | None = None,
) -> Report:
    """Verify every target; the Report has one HostResult per target, trust control first.

    Hosts that could not be reached (or refused the login) carry the trust control as an error
    with the reason; the others are verified all the same. `on_event` hears, per host (by its
    alias), what is being done (`now`), how many controls it will run (`total`) and each
    control's result as it comes (`control`, `status`)."""
    tell = on_event or (lambda _event: None)
    vetted = preflight(targets, probe_keys=probe_keys, select=select)
    with tempfile.TemporaryDirectory(prefix="bulwark-verify-") as tmp:
        work = _safe_dir(Path(tmp))
        config = work / "ssh_config"
        config.write_text(ssh_config(vetted, work))
        trusted = {}
        report = Report(inventory=repo_relative(inventory) if inventory else None)
        for alias, t in vetted.items():
            tell({"host": t.alias, "now": "connecting: is the host key the pinned one?"})
            result = check_trust(t, alias, config)
            report.hosts.append(HostResult(host=t.alias, controls=[result]))
            tell({"host": t.alias, "control": result.id, "status": result.status})
            if result.status == "pass":
                trusted[alias] = t
        try:
            if trusted:
                for t in trusted.values():
                    tell({"host": t.alias, "now": "collecting the controls"})
                aliases = {alias: t.alias for alias, t in trusted.items()}

                def relay(event: dict[str, object]) -> None:  # the suite's host names: aliases
                    tell({**event, "host": aliases.get(str(event.get("host")), event["host"])})

                suite = _run_suite(trusted, work, config, ban_probe, probe_keys, select, relay)
                _merge(report, suite, trusted, select)
        finally:
            for alias in vetted:
                subprocess.run(
                    ["ssh", "-F", str(config), "-O", "exit", alias],
                    capture_output=True,
                    check=False,
                    timeout=30,
                )
    if json_out is not None:
        report.write(json_out)
    if junit_out is not None:
        junit_out.write_text(report.to_junit())
    return report


def _merge(
    report: Report, suite: Report, trusted: dict[str, VerifyTarget], select: str | None
) -> None:
    """Add the suite's results (keyed by bulwark's aliases) to each host's trust result; a
    trusted host with no control result was not verified at all, and that must not read as a
    pass."""
    for host in suite.hosts:
        report.host(trusted[host.host].alias).controls.extend(host.controls)
    for t in trusted.values():
        if len(report.host(t.alias).controls) == 1:  # the trust check alone
            selected = f" (-k {select!r} selects none)" if select else ""
            raise BulwarkError(f"{t.alias}: no control ran{selected}: nothing was verified")


def _run_suite(
    targets: dict[str, VerifyTarget],
    work: Path,
    config: Path,
    ban_probe: bool,
    probe_keys: list[Path] | None,
    select: str | None,
    on_event: OnEvent,
) -> Report:
    meta = {
        alias: {
            "settings": t.settings,
            "forwarded": {str(k): v for k, v in t.forwarded.items()},
            "probe_keys": [str(p) for p in probe_keys or []],
        }
        for alias, t in targets.items()
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
        ",".join(f"ssh://{alias}" for alias in targets),
        "--ssh-config",
        str(config),
        "--sudo",
        "--bulwark-hosts",
        str(work / "hosts.json"),
        "--bulwark-json",
        str(results),
    ]
    cmd += ["--bulwark-ban-probe"] if ban_probe else []
    cmd += [f"-k{select}"] if select else []  # attached: an expression may start with '-'
    events = work / "events.jsonl"
    cmd += ["--bulwark-events", str(events)]
    output = work / "pytest.out"
    with output.open("w", encoding="utf-8") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, cwd=work)
        try:
            returncode = _follow(proc, events, on_event)
        finally:
            if proc.poll() is None:  # interrupted: the suite does not outlive the command
                proc.kill()
                proc.wait()
    # pytest: 0 all passed, 1 some failed; anything else (interrupted, internal or usage error,
    # nothing collected) means the suite itself did not run as it should.
    if returncode not in (0, 1) or not results.is_file():
        tail = "\n".join(output.read_text(encoding="utf-8").strip().splitlines()[-20:])
        raise BulwarkError(
            f"the verification suite did not run (pytest exit {returncode}):\n{tail}"
        )
    return Report.read(results)


def _follow(proc: subprocess.Popen[bytes], events: Path, on_event: OnEvent) -> int:
    """Relay the suite's events (JSON lines it appends) while it runs; its exit status."""
    offset = 0
    while True:
        returncode = proc.poll()
        if events.is_file():
            with events.open("rb") as stream:
                stream.seek(offset)
                chunk = stream.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
            offset += len(complete)
            for line in complete.decode("utf-8").splitlines():
                on_event(json.loads(line))
        if returncode is not None:
            return returncode
        time.sleep(0.2)
