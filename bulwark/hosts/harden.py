"""Run the harden deploy through pyinfra, after checking the inventory without contacting hosts.

Two passes, as `pulumi up` does: `preview` asks pyinfra for its plan (it connects and reads
facts, changes nothing), `apply` runs the deploy. pyinfra's own output goes to a log file line by
line, each stamped with the seconds since the run began (so the log says where the time went:
`bulwark.hosts.harden.timings`), and each line is also handed to a callback that turns it into
progress; the results come back as pyinfra's JSON (which operation changed, or failed, on which
host), summed per area.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from bulwark.dirs import state_dir
from bulwark.errors import BulwarkError
from bulwark.hosts import inventory as host_inventory
from bulwark.hosts.inventory import InventoryHost
from bulwark.secretscan import secret_value
from bulwark.settings.endpoints import check_limit

HARDEN_DEPLOY = "bulwark.hosts.deploys.harden.harden"
# The operation whose success means a fresh login confirmed the new sshd (ssh.py names it).
GUARD_OPERATION = "cancels the revert"
SSHD_OPERATION = "Harden sshd"


def area_of(name: str) -> str:
    """The area an operation belongs to: its deploy under `bulwark harden | <area> | <op>`."""
    parts = [p.strip() for p in name.split(" | ")]
    return parts[1] if len(parts) > 2 else "preflight"


def operation_of(name: str) -> str:
    return name.rsplit(" | ", maxsplit=1)[-1].strip()


@dataclass(frozen=True)
class Change:
    """One operation that changes (or would change) a host."""

    area: str
    operation: str

    def as_dict(self) -> dict[str, str]:
        return {"area": self.area, "operation": self.operation}


@dataclass
class FileDiff:
    """One file pyinfra's --diff says a run creates or changes, and how."""

    path: str
    action: str  # "create", "modify", "replace lines in", "remove lines in"
    diff: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "action": self.action, "diff": self.diff}


# pyinfra's --diff lines: "    [host] Will modify /etc/x", then the diff indented by six.
WILL = re.compile(
    r"^\s*\[(?P<host>[^\]]+)\] Will (?P<action>create|modify|replace lines in|remove lines in) "
    r"(?P<path>\S+)\s*$",
    re.IGNORECASE,
)
DIFF_INDENT = "      "


def redact(line: str) -> str:
    """A line of pyinfra's output as bulwark keeps and shows it: a diff line that holds a secret
    (a SCRAM verifier, a key, a token) is replaced, so --diff never puts one in the log."""
    if "SCRAM-SHA-256$" in line or (line.startswith(DIFF_INDENT) and secret_value(line)):
        indent = line[: len(line) - len(line.lstrip())]
        sign = line.strip()[:1] if line.strip()[:1] in "+-" else ""
        return f"{indent}{sign} (a secret: not shown)"
    return line


@dataclass
class FileDiffs:
    """Collects, from pyinfra's stderr, per host the files --diff reports."""

    by_host: dict[str, list[FileDiff]] = field(default_factory=dict)
    _open: FileDiff | None = None

    def feed(self, line: str) -> None:
        if match := WILL.match(line):
            self._open = FileDiff(match["path"], match["action"].lower())
            self.by_host.setdefault(match["host"], []).append(self._open)
        elif self._open is not None and line.startswith(DIFF_INDENT) and line.strip():
            self._open.diff.append(line[len(DIFF_INDENT) :])
        else:
            self._open = None


@dataclass
class HostOutcome:
    """What harden did (or would do) on one host."""

    name: str
    changed: list[Change] = field(default_factory=list)
    unchanged: int = 0
    failed: list[Change] = field(default_factory=list)
    guard: str = "not run"
    # With --diff: the files the run changes (or would), each with pyinfra's diff of it.
    files: list[FileDiff] = field(default_factory=list)

    @property
    def per_area(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for change in self.changed:
            counts[change.area] = counts.get(change.area, 0) + 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.name,
            "changed": len(self.changed),
            "unchanged": self.unchanged,
            "failed": len(self.failed),
            "changed_per_area": self.per_area,
            "changes": [c.as_dict() for c in self.changed],
            "failures": [c.as_dict() for c in self.failed],
            "lockout_guard": self.guard,
            "files": [f.as_dict() for f in self.files],
        }


@dataclass
class HardenRun:
    """A preview (`dry`) or an applied run: per host outcome, duration and pyinfra's log."""

    dry: bool
    hosts: list[HostOutcome]
    seconds: float
    log: Path
    # When something failed: the end of pyinfra's own account of it (the host's error lines).
    detail: str = ""

    @property
    def changed(self) -> int:
        return sum(len(h.changed) for h in self.hosts)

    @property
    def ok(self) -> bool:
        return not any(h.failed for h in self.hosts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": "preview" if self.dry else "apply",
            "ok": self.ok,
            "changed": self.changed,
            "seconds": round(self.seconds, 1),
            "log": str(self.log),
            "hosts": [h.as_dict() for h in self.hosts],
        }


def prepare(inventory: Path, limit: str | None = None) -> list[InventoryHost]:
    """Load and preflight every host (keys, pinned host keys, access proofs): nothing contacted."""
    hosts = host_inventory.load(inventory, limit)
    host_inventory.preflight(hosts)
    return hosts


def new_log(kind: str = "harden") -> Path:
    """A fresh file for pyinfra's output, under bulwark's state directory (mode 0600)."""
    logs = state_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    path = logs / f"{kind}-{stamp}.log"
    path.touch(mode=0o600)
    return path


def _command(inventory: Path, limit: str | None, *, dry: bool, diff: bool) -> list[str]:
    # The inventory by absolute path and the limit attached: neither can be read as an option.
    # Host keys are always checked against the pinned ones (preflight made sure they exist).
    cmd = [sys.executable, "-m", "pyinfra", str(inventory.resolve()), HARDEN_DEPLOY]
    cmd += ["--data", "ssh_strict_host_key_checking=yes"]
    # No ssh_config: pyinfra would read ~/.ssh/config, whose HostName, Port or ProxyCommand
    # would take the run somewhere other than the host preflight checked and bootstrap proved.
    cmd += ["--data", "ssh_config_file=/dev/null"]
    # A connection UFW's rate limit refused (right after a verify, say) is tried again once
    # the limit's 30 s window has passed; sooner tries only keep the limit on.
    cmd += ["--data", "ssh_connect_retries=2", "--data", "ssh_connect_retry_min_delay=31"]
    cmd += ["--data", "ssh_connect_retry_max_delay=35"]
    cmd += [f"--limit={pattern}" for pattern in check_limit(limit)] if limit else []
    cmd += ["--json", "--dry"] if dry else ["--json", "-y"]
    cmd += ["--diff"] if diff else []
    return cmd


def run_harden(
    inventory: Path,
    hosts: list[InventoryHost],
    *,
    limit: str | None = None,
    dry: bool = False,
    diff: bool = False,
    on_line: Callable[[str], None] | None = None,
    log: Path | None = None,
) -> HardenRun:
    """Run pyinfra's plan (`dry`) or the deploy on already prepared hosts; raises BulwarkError
    when pyinfra fails, naming the log."""
    log = log or new_log()
    started = time.monotonic()
    cmd = _command(inventory, limit, dry=dry, diff=diff)
    # pyinfra's working directory is the inventory's project, so that relative paths in the
    # inventory (its key, its known_hosts) mean what bulwark's preflight took them to mean.
    cwd = host_inventory.project_of(inventory)
    with log.open("a", encoding="utf-8") as sink:
        sink.write(f"$ {' '.join(cmd)}\n")
        sink.flush()
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        stderr_lines: list[str] = []
        files = FileDiffs()

        def take(line: str) -> None:
            stderr_lines.append(line)
            files.feed(line)
            if on_line is not None:
                on_line(line)

        stdout = _follow(proc, sink, take, started)
        code = proc.wait()
        sink.write(stdout)
    seconds = time.monotonic() - started
    names = [h.name for h in hosts]
    payload = _payload(stdout)
    if code != 0 and payload is None:
        tail = "\n".join(log.read_text(encoding="utf-8").strip().splitlines()[-12:])
        raise BulwarkError(
            f"pyinfra failed on {', '.join(names)} (exit {code}); sshd changes that were not "
            f"confirmed revert by themselves; its log: {log}" + (f"\n{tail}" if tail else "")
        )
    run = HardenRun(dry, outcomes(payload or {}, names, dry=dry), seconds, log)
    for outcome in run.hosts:
        outcome.files = files.by_host.get(outcome.name, [])
    if code != 0 and run.ok:
        # pyinfra failed outside any operation (a host it could not connect to, say).
        failed = (payload or {}).get("results", {}) or {}
        for outcome in run.hosts:
            if outcome.name in failed.get("failed_hosts", []):
                outcome.failed.append(Change("connect", "pyinfra could not run on this host"))
        if run.ok:
            run.hosts[0].failed.append(Change("pyinfra", f"exit {code}: see {log}"))
    if not run.ok:
        run.detail = _tail(stderr_lines)
    return run


def _tail(lines: list[str], count: int = 15) -> str:
    kept = [line.rstrip() for line in lines if line.strip()]
    return "\n".join(kept[-count:])


def _follow(
    proc: subprocess.Popen[str],
    sink: IO[str],
    on_line: Callable[[str], None] | None,
    started: float,
) -> str:
    """Copy pyinfra's stderr to the log as it comes, each line stamped (and to `on_line`,
    unstamped); return its stdout."""
    import threading  # noqa: PLC0415

    stdout, stderr = proc.stdout, proc.stderr
    if stdout is None or stderr is None:
        raise BulwarkError("pyinfra started without its output pipes")
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.append(stdout.read()), daemon=True)
    reader.start()
    for raw in stderr:
        line = redact(raw.rstrip("\n"))
        sink.write(f"{time.monotonic() - started:{STAMP_WIDTH}.1f} | {line}\n")
        sink.flush()
        if on_line is not None:
            on_line(line)
    reader.join()
    return "".join(chunks)


STAMP_WIDTH = 7
STAMPED = re.compile(r"^ *(\d+\.\d) \| (.*)$")


def timings(log: str) -> list[tuple[str, float]]:
    """Seconds per step of a run's log, in order: pyinfra's connect and prepare phases, then each
    operation (from its start to the next one's, across all hosts), then the results."""
    steps: list[tuple[str, float]] = []
    for raw in log.splitlines():
        match = STAMPED.match(raw)
        if match is None:
            continue
        text = match.group(2).strip()
        if text.startswith(STARTING):
            steps.append((text.removeprefix(STARTING).strip(), float(match.group(1))))
        elif text.startswith("-->"):
            steps.append((text.removeprefix("-->").strip(" ."), float(match.group(1))))
    return [(name, later - at) for (name, at), (_, later) in itertools.pairwise(steps)]


def _payload(stdout: str) -> dict[str, Any] | None:
    start = stdout.find("{")
    if start < 0:
        return None
    try:
        data = json.loads(stdout[start:])
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def outcomes(payload: dict[str, Any], names: list[str], *, dry: bool) -> list[HostOutcome]:
    """Per host outcome from pyinfra's JSON: its plan (dry) or its results."""
    by_host = {name: HostOutcome(name) for name in names}
    if dry:
        # A change pyinfra can only call conditional (a Python callback, such as the lockout
        # guard's fresh login) is not promised: the preview lists what will change.
        for op in payload.get("plan") or []:
            change = Change(area_of(op["name"]), operation_of(op["name"]))
            changing = set(op.get("hosts_with_change", []))
            for name, outcome in by_host.items():
                if name in changing:
                    outcome.changed.append(change)
                else:
                    outcome.unchanged += 1
        return list(by_host.values())
    results = payload.get("results") or {}
    for op in results.get("operations", []):
        change = Change(area_of(op["name"]), operation_of(op["name"]))
        hosts_by_result = (("success", "changed"), ("no_change", None), ("error", "failed"))
        for key, bucket in hosts_by_result:
            for name in op.get(key, []):
                if name not in by_host:
                    continue
                if bucket is None:
                    by_host[name].unchanged += 1
                else:
                    getattr(by_host[name], bucket).append(change)
    for outcome in by_host.values():
        outcome.guard = _guard(outcome)
    return list(by_host.values())


def _guard(outcome: HostOutcome) -> str:
    """The lockout guard's verdict: did a fresh login confirm a changed sshd?"""
    sshd_changed = any(SSHD_OPERATION in c.operation for c in outcome.changed)
    if any(GUARD_OPERATION in c.operation for c in outcome.changed):
        return "confirmed"
    if any(SSHD_OPERATION in c.operation or GUARD_OPERATION in c.operation for c in outcome.failed):
        return "reverted"
    if sshd_changed:
        return "reverted"
    return "not needed"


# What pyinfra says on stderr (not a terminal, so no colour) that progress is made of.
STARTING = "--> Starting operation:"
PHASES = {
    "--> Loading inventory": "loading the inventory",
    "--> Connecting to hosts": "connecting",
    "--> Preparing operation": "reading facts and planning",
    "--> Beginning operation run": "applying",
}
HOST_DONE = {"Success": "changed", "No changes": "unchanged", "Skipped": "skipped"}


@dataclass
class Tracker:
    """Progress read from pyinfra's output: the phase, the operation, and per host how many
    operations are done and how many changed."""

    hosts: list[str]
    total: int | None = None
    phase: str = "starting"
    area: str = ""
    operation: str = ""
    done: dict[str, int] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def feed(self, line: str) -> bool:
        """Take one line of pyinfra's output; True when it moved the progress."""
        text = line.strip()
        for prefix, phase in PHASES.items():
            if text.startswith(prefix):
                self.phase = phase
                return True
        if text.startswith(STARTING):
            name = text.removeprefix(STARTING).strip()
            self.area, self.operation = area_of(name), operation_of(name)
            return True
        if text.startswith("[") and "]" in text:
            host, _, status = text[1:].partition("]")
            status = status.strip()
            if host not in self.hosts:
                return False
            if status.startswith(tuple(HOST_DONE)):
                self.done[host] = self.done.get(host, 0) + 1
                if status.startswith("Success"):
                    self.changed[host] = self.changed.get(host, 0) + 1
                return True
            if status.startswith("Error"):
                self.done[host] = self.done.get(host, 0) + 1
                self.errors[host] = self.errors.get(host, 0) + 1
                return True
        return False
