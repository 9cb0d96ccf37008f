"""SSH: a hardened sshd drop-in that wins, conflicting drop-ins neutralised, host keys and moduli
fit for ssh-audit's hardened policy, and a lockout guard around every change.

The guard: before sshd's config changes, /etc/ssh is copied aside and a systemd timer is armed
on the host that restores it. The change is validated with `sshd -t` (restored at once if that
fails) and sshd reloaded. Then, from the controller, a NEW connection as the deploy user on the
(new) port must log in and cancel the timer; if it cannot, the host restores the old config by
itself when the timer fires.
"""

from __future__ import annotations

import hashlib
import io
import shlex
from dataclasses import dataclass
from functools import cache

from pyinfra import host
from pyinfra.api import OperationError, deploy, operation
from pyinfra.operations import files, python

from bulwark.errors import BulwarkError
from bulwark.hosts.bootstrap import proof_from
from bulwark.hosts.deploys.context import current
from bulwark.hosts.facts import SshdState
from bulwark.hosts.inventory import InventoryHost
from bulwark.hosts.keys import load_key
from bulwark.hosts.operations import ConfigFile, config_files
from bulwark.hosts.ssh import Login, connect
from bulwark.hosts.sshcrypto import MIN_MODULUS_BITS, RSA_HOST_KEY_BITS, crypto_for
from bulwark.hosts.templates import render
from bulwark.settings.hosts import HardenSettings, SshSettings

DROPIN = "/etc/ssh/sshd_config.d/00-bulwark.conf"
# 0711: others may pass through to the deploy user's upload dir below it, never list it.
STATE_DIR = "/var/lib/bulwark"
BACKUP = f"{STATE_DIR}/ssh-backup"
REVERT_UNIT = "bulwark-ssh-revert"
REVERT_SCRIPT = "/usr/local/sbin/bulwark-ssh-revert"


@cache
def managed_keys() -> frozenset[str]:
    """Directives whose value we own (every one our template can emit); other drop-ins that set
    them are commented out, so a later-read file can never look as if it applied."""
    sample = render(
        "ssh/00-bulwark.conf.j2",
        ssh=SshSettings(banner="x", allow_groups=("g",)),
        allow_users=["u"],
        crypto=crypto_for((9, 2)),
        openssh="9.2",
        required_rsa_size=True,
    )
    return frozenset(
        line.split()[0].lower() for line in sample.splitlines() if line.strip() and line[0] != "#"
    )


@dataclass(frozen=True)
class SshPlan:
    """What the guarded change must do; empty when sshd already is as wanted."""

    dropin: str
    dropin_changes: bool
    neutralise: tuple[tuple[str, int], ...]
    remove_host_keys: tuple[str, ...]
    regenerate_rsa: bool
    filter_moduli: bool
    port_changes: bool
    socket_activated: bool

    @property
    def empty(self) -> bool:
        return not (
            self.dropin_changes
            or self.neutralise
            or self.remove_host_keys
            or self.regenerate_rsa
            or self.filter_moduli
        )


def make_plan(conf: HardenSettings, conn: InventoryHost) -> SshPlan:
    state = host.get_fact(SshdState, dropin=DROPIN)
    version = state["version"]
    if version is None:
        raise OperationError(f"{host.name}: OpenSSH not found (ssh -V)")
    try:
        crypto = crypto_for(version)
    except ValueError as exc:
        raise OperationError(f"{host.name}: {exc}") from None
    dropin = render(
        "ssh/00-bulwark.conf.j2",
        ssh=conf.ssh,
        allow_users=conf.allowed_users,
        crypto=crypto,
        openssh=f"{version[0]}.{version[1]}",
        required_rsa_size=version >= (9, 1),
    )
    wanted = hashlib.sha1(dropin.encode(), usedforsecurity=False).hexdigest()
    keys = state["hostkeys"]
    return SshPlan(
        dropin=dropin,
        dropin_changes=state["dropin_sha1"] != wanted,
        neutralise=tuple(
            (path, number)
            for path, number, text in state["others"]
            if text.split()[0].lower() in managed_keys()
        ),
        remove_host_keys=tuple(sorted(k for k in keys if k not in ("ED25519", "RSA"))),
        regenerate_rsa=keys.get("RSA", 0) < RSA_HOST_KEY_BITS,
        filter_moduli=state["weak_moduli"] > 0,
        port_changes=conf.ssh.port != conn.sshd_port,
        socket_activated=state["socket"],
    )


def reload_command(plan: SshPlan) -> str:
    """How sshd picks up the change: a reload keeps sessions; a new port needs the listener
    restarted, and on Ubuntu >= 22.10 the port lives in ssh.socket (ANCHORS pitfall 4)."""
    if plan.socket_activated and plan.port_changes:
        return "systemctl daemon-reload && systemctl restart ssh.socket"
    if plan.port_changes:
        return "systemctl restart ssh"
    return "systemctl reload ssh"


@operation()
def guarded_sshd_change(conn: InventoryHost):  # type: ignore[no-untyped-def]
    """Change sshd's config under the revert guard (backup + timer), validate, reload.

    + conn: the host as the inventory describes it (settings, how we reach it)
    """
    plan = make_plan(conn.settings, conn)
    revert_after = conn.settings.ssh.revert_after
    if plan.empty:
        host.noop("sshd config, host keys and moduli are already hardened")
        return
    yield (
        f"systemctl stop {REVERT_UNIT}.timer 2>/dev/null; "
        f"systemctl reset-failed {REVERT_UNIT}.service {REVERT_UNIT}.timer 2>/dev/null; "
        f"install -d -m 711 {STATE_DIR} && rm -rf {BACKUP}.new && cp -a /etc/ssh {BACKUP}.new "
        f"&& rm -rf {BACKUP} && mv {BACKUP}.new {BACKUP}"
    )
    yield (
        f"systemd-run --quiet --unit={REVERT_UNIT} --on-active={revert_after}s "
        f"--description='bulwark: restore sshd config unless a fresh login confirms it' "
        f"{REVERT_SCRIPT}"
    )
    for path, number in plan.neutralise:
        yield (
            f"sed -i '{number}s/^/# neutralised by bulwark (00-bulwark.conf decides): /' "
            f"{shlex.quote(path)}"
        )
    for kind in plan.remove_host_keys:
        key = f"/etc/ssh/ssh_host_{kind.lower()}_key"
        yield f"rm -f {key} {key}.pub"
    if plan.regenerate_rsa:
        key = "/etc/ssh/ssh_host_rsa_key"
        yield (
            f"rm -f {key} {key}.pub && ssh-keygen -q -t rsa -b {RSA_HOST_KEY_BITS} -N '' -f {key}"
        )
    if plan.filter_moduli:
        yield (
            f"awk '$1 ~ /^#/ || $5 >= {MIN_MODULUS_BITS - 1}' /etc/ssh/moduli "
            "> /etc/ssh/moduli.new && mv /etc/ssh/moduli.new /etc/ssh/moduli"
        )
    if plan.dropin_changes:
        yield from files.put._inner(
            src=io.StringIO(plan.dropin), dest=DROPIN, user="root", group="root", mode="600"
        )
    # An invalid config never reaches a running sshd: restore at once and fail the run.
    yield (
        f"sshd -t || {{ systemctl stop {REVERT_UNIT}.timer; {REVERT_SCRIPT}; "
        "echo 'sshd -t rejected the new config; the previous one is back' >&2; exit 1; }"
    )
    yield reload_command(plan)


def confirm_fresh_login(conn: InventoryHost, port: int) -> None:
    """Runs on the controller: a NEW login as the deploy user on `port` cancels the revert timer.

    One connection does it all (ufw rate-limits SSH per source): log in by key, check the user
    and `sudo -n`, stop the timer, record the proof.
    """
    assert conn.key_file is not None
    store = conn.trust
    target = conn.reach(port)
    if target != conn.target and not store.known_hosts.keys_for(target):
        # Same host, new port: carry the pinned key over so the new port is not trust-on-first-use.
        for key in store.known_hosts.keys_for(conn.target).values():
            store.known_hosts.pin(target.known_hosts_name, key)
    login = Login(conn.user, key=load_key(conn.key_file))
    try:
        with connect(target, login, store.known_hosts) as s:
            s.run(f"systemctl stop {REVERT_UNIT}.timer", sudo=True)
            proof = proof_from(s)
    except BulwarkError as exc:
        raise OperationError(
            f"{host.name}: no fresh login after the sshd change ({exc}); the host restores "
            f"its previous sshd config within the revert window"
        ) from None
    store.record(proof)


@deploy("SSH")
def ssh() -> None:
    conn = current()
    conf = conn.settings
    installed = [
        ConfigFile(REVERT_SCRIPT, render("ssh/bulwark-ssh-revert.sh.j2", backup=BACKUP), mode="755")
    ]
    if conf.ssh.banner:
        installed.append(ConfigFile("/etc/issue.net", conf.ssh.banner.rstrip("\n") + "\n"))
    config_files(
        name="sshd revert script" + (" and pre-login banner" if conf.ssh.banner else ""),
        files=installed,
    )
    change = guarded_sshd_change(
        name="Harden sshd (guarded: reverts unless a fresh login confirms)",
        conn=conn,
    )
    python.call(
        name=f"Fresh login as {conn.user} on port {conf.ssh.port} cancels the revert",
        function=confirm_fresh_login,
        conn=conn,
        port=conf.ssh.port,
        _if=change.did_change,
    )
