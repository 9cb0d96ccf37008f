"""SSH: a hardened sshd drop-in that wins, conflicting drop-ins neutralised, host keys and moduli
fit for ssh-audit's hardened policy, and a lockout guard around every change.

The guard: before sshd's config changes, /etc/ssh is copied aside; the slow parts (a new RSA
host key, filtered moduli) are prepared beside it; then a systemd timer is armed on the host that
restores the copy, and only then is /etc/ssh changed. The change is validated with `sshd -t` and
by sshd's effective config (`sshd -T` must show the drop-in's values: it is read, and it wins);
either failing restores the files at once, before sshd ever reads them. Then sshd reloads, and
from the controller a NEW connection as the deploy user on the (new) port must log in and cancel
the timer; if it cannot, the host restores the old config and restarts sshd by itself.

A run cut off after the change but before that login leaves the timer running: the next run
sees it, keeps the backup it made (the last confirmed config), and confirms or redoes the change.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

from pyinfra import host
from pyinfra.api import OperationError, deploy, operation
from pyinfra.operations import python

from bulwark.errors import BulwarkError
from bulwark.hosts.bootstrap import proof_from
from bulwark.hosts.deploys.context import current
from bulwark.hosts.facts import SshdState
from bulwark.hosts.inventory import InventoryHost
from bulwark.hosts.keys import load_key
from bulwark.hosts.operations import ConfigFile, config_files, fact, put_files
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
# Written by the revert script when the timer fired: a confirmation that comes later is too late.
REVERTED_MARK = f"{STATE_DIR}/ssh-reverted"
STAGED_RSA = f"{STATE_DIR}/ssh_host_rsa_key.new"
STAGED_MODULI = f"{STATE_DIR}/moduli.new"
KEYGEN_UNIT = "bulwark-ssh-keygen"


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
    # An earlier run changed sshd and was cut off before a fresh login confirmed the change.
    revert_pending: bool = False

    @property
    def empty(self) -> bool:
        return not (
            self.dropin_changes
            or self.neutralise
            or self.remove_host_keys
            or self.regenerate_rsa
            or self.filter_moduli
        )


def make_plan(conf: HardenSettings, inventory_host: InventoryHost) -> SshPlan:
    state = fact(SshdState, dropin=DROPIN, revert_unit=REVERT_UNIT)
    version = state.version
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
    keys = state.hostkeys
    return SshPlan(
        dropin=dropin,
        dropin_changes=state.dropin_sha1 != wanted,
        neutralise=tuple(
            (path, number)
            for path, number, text in state.others
            if text.split()[0].lower() in managed_keys()
        ),
        remove_host_keys=tuple(sorted(k for k in keys if k not in ("ED25519", "RSA"))),
        regenerate_rsa=keys.get("RSA", 0) < RSA_HOST_KEY_BITS,
        filter_moduli=state.weak_moduli > 0,
        port_changes=conf.ssh.port != inventory_host.sshd_port,
        socket_activated=state.socket,
        revert_pending=state.revert_pending,
    )


def _rsa_keygen(path: str) -> str:
    return f"ssh-keygen -q -t rsa -b {RSA_HOST_KEY_BITS} -N '' -f {path}"


def rsa_key_in_background() -> str:
    """Shell that starts a new RSA host key beside /etc/ssh, at the lowest CPU priority, when the
    host's is weaker than wanted and none is staged or being made. A 4096-bit key is a minute or
    more of CPU on a small or emulated host; started before the first run's apt work, it takes
    only what apt leaves idle while it downloads. The guarded change waits for it (or makes the
    key itself). The private key never leaves the host."""
    part = f"{STAGED_RSA}.part"
    make = (
        f"rm -f {part} {part}.pub && {_rsa_keygen(part)} "
        f"&& mv {part}.pub {STAGED_RSA}.pub && mv {part} {STAGED_RSA}"
    )
    return (
        "bits=$(ssh-keygen -l -f /etc/ssh/ssh_host_rsa_key.pub 2>/dev/null | cut -d' ' -f1); "
        f'[ "${{bits:-0}}" -ge {RSA_HOST_KEY_BITS} ] || [ -e {STAGED_RSA} ] || '
        f"systemctl is-active --quiet {KEYGEN_UNIT} || {{ install -d -m 711 {STATE_DIR} && "
        f"systemctl reset-failed {KEYGEN_UNIT} 2>/dev/null; "
        f"systemd-run --quiet --collect --unit={KEYGEN_UNIT} --nice=19 "
        f"--description='bulwark: a new RSA host key, made while apt works' "
        f"sh -c {shlex.quote(make)}; }} || true"
    )


def staged_rsa_key() -> str:
    """Shell that leaves a new RSA host key at STAGED_RSA: the one made in the background when
    it is there and whole (waited for while it is still being made; its public half derived
    again from the private key, so the pair always matches), otherwise made now."""
    return (
        f"while systemctl is-active --quiet {KEYGEN_UNIT}; do sleep 1; done; "
        f"{{ ssh-keygen -y -f {STAGED_RSA} > {STAGED_RSA}.pub 2>/dev/null && "
        f"ssh-keygen -l -f {STAGED_RSA}.pub | grep -q '^{RSA_HOST_KEY_BITS} '; }} || "
        f"{{ rm -f {STAGED_RSA} {STAGED_RSA}.pub && {_rsa_keygen(STAGED_RSA)}; }}"
    )


def effective_values(conf: HardenSettings) -> list[str]:
    """Lines `sshd -T` must print once the drop-in is in place: proof that sshd reads it and
    that no earlier-read file or Match block overrides it."""
    return [
        f"port {conf.ssh.port}",
        "permitrootlogin no",
        "passwordauthentication no",
        "kbdinteractiveauthentication no",
        "authenticationmethods publickey",
        f"maxauthtries {conf.ssh.max_auth_tries}",
    ]


def effective_check(conf: HardenSettings, user: str) -> str:
    """Shell that fails (naming the first missing line) unless sshd's effective config for
    `user` shows every value of effective_values()."""
    wants = " ".join(shlex.quote(v) for v in effective_values(conf))
    return (
        f"eff=$(sshd -T -C user={user},host=bulwark-check,addr=198.51.100.7) && "
        f'for want in {wants}; do printf \'%s\\n\' "$eff" | grep -qxiF "$want" || '
        "{ echo \"sshd's effective config lacks '$want': another file read before "
        f'{DROPIN} (or a Match block) decides it" >&2; exit 1; }}; done && '
        "{ [ \"$(printf '%s\\n' \"$eff\" | grep -ci '^port ')\" = 1 ] || "
        '{ echo "sshd would listen on more than one port: $(printf \'%s\\n\' "$eff" | '
        "grep -i '^port ' | tr '\\n' ' ')\" >&2; exit 1; }; }"
    )


def reload_command(plan: SshPlan) -> str:
    """How sshd picks up the change: a reload keeps sessions; a new port needs the listener
    restarted, and on Ubuntu >= 22.10 the port lives in ssh.socket (docs/design.md, "Lockout
    guard")."""
    if plan.socket_activated and plan.port_changes:
        return "systemctl daemon-reload && systemctl restart ssh.socket"
    if plan.port_changes:
        return "systemctl restart ssh"
    return "systemctl reload ssh"


@operation()
def guarded_sshd_change(inventory_host: InventoryHost):  # type: ignore[no-untyped-def]
    """Change sshd's config under the revert guard (backup + timer), validate, reload.

    + inventory_host: the host as the inventory describes it (settings, how we reach it)
    """
    plan = make_plan(inventory_host.settings, inventory_host)
    revert_after = inventory_host.settings.ssh.revert_after
    if plan.empty and not plan.revert_pending:
        host.noop("sshd config, host keys and moduli are already hardened")
        return
    if plan.empty:
        # In place but never confirmed (the run that made it was cut off, maybe before its
        # checks or the reload): check, reload, and let the fresh login below cancel the timer,
        # or the host goes back to its previous config although this run reported success.
        yield from _validate_and_reload(inventory_host, plan)
        return
    if not plan.revert_pending:
        # The copy the timer restores. While an unconfirmed change is pending, the copy that
        # run took is the last confirmed config, and it stays.
        yield (
            f"systemctl reset-failed {REVERT_UNIT}.service {REVERT_UNIT}.timer 2>/dev/null; "
            f"install -d -m 711 {STATE_DIR} && rm -rf {BACKUP}.new && cp -a /etc/ssh {BACKUP}.new "
            f"&& rm -rf {BACKUP} && mv {BACKUP}.new {BACKUP}"
        )
    # The slow parts are prepared beside /etc/ssh, before the timer runs: a 4096-bit key takes
    # minutes on a small host and must not eat the window the fresh login has.
    if plan.regenerate_rsa:
        yield staged_rsa_key()
    if plan.filter_moduli:
        yield f"awk '$1 ~ /^#/ || $5 >= {MIN_MODULUS_BITS - 1}' /etc/ssh/moduli > {STAGED_MODULI}"
    # From here on /etc/ssh changes, so the timer runs first (re-armed: a full window again).
    yield (
        f"rm -f {REVERTED_MARK}; systemctl stop {REVERT_UNIT}.timer 2>/dev/null; "
        f"systemctl reset-failed {REVERT_UNIT}.service {REVERT_UNIT}.timer 2>/dev/null; "
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
        yield f"mv {STAGED_RSA} {key} && mv {STAGED_RSA}.pub {key}.pub"
    if plan.filter_moduli:
        yield f"mv {STAGED_MODULI} /etc/ssh/moduli"
    if plan.dropin_changes:
        yield from put_files([ConfigFile(DROPIN, plan.dropin, mode="600")])
    yield from _validate_and_reload(inventory_host, plan)


def _validate_and_reload(inventory_host: InventoryHost, plan: SshPlan) -> Iterator[str]:
    """An invalid or overridden config never reaches a running sshd: the files go back at once
    (sshd has not read them) and the run fails. While an earlier unconfirmed change is what
    sshd runs, the timer stays: it still has to bring sshd back to the confirmed config."""
    stop = "" if plan.revert_pending else f"systemctl stop {REVERT_UNIT}.timer; "
    restore = f"{stop}{REVERT_SCRIPT} --files-only"
    yield (
        f"sshd -t || {{ {restore}; "
        "echo 'sshd -t rejected the new config; the previous one is back' >&2; exit 1; }"
    )
    yield (
        f"( {effective_check(inventory_host.settings, inventory_host.user)} ) || {{ {restore}; "
        "echo 'the previous sshd config is back' >&2; exit 1; }"
    )
    yield reload_command(plan)


def confirm_fresh_login(inventory_host: InventoryHost, port: int) -> None:
    """Runs on the controller: a NEW login as the deploy user on `port` cancels the revert timer.

    One connection does it all (ufw rate-limits SSH per source): log in by key, check the user
    and `sudo -n`, stop the timer, record the proof.
    """
    assert inventory_host.key_file is not None
    store = inventory_host.trust
    target = inventory_host.reach(port)
    if target != inventory_host.target and not store.known_hosts.keys_for(target):
        # Same host, new port: carry the pinned key over so the new port is not trust-on-first-use.
        for key in store.known_hosts.keys_for(inventory_host.target).values():
            store.known_hosts.pin(target.known_hosts_name, key)
    login = Login(inventory_host.user, key=load_key(inventory_host.key_file))
    try:
        with connect(target, login, store.known_hosts) as s:
            # Stopped first, then asked whether it already fired (or is restoring right now).
            cancelled = s.run(
                f"systemctl stop {REVERT_UNIT}.timer; [ ! -e {REVERTED_MARK} ] && "
                f'case "$(systemctl show -p ActiveState --value {REVERT_UNIT}.service)" in '
                "activ*|reloading) false ;; *) true ;; esac",
                sudo=True,
                check=False,
            )
            proof = proof_from(s)
    except BulwarkError as exc:
        raise OperationError(
            f"{host.name}: no fresh login after the sshd change ({exc}); the host restores "
            f"its previous sshd config within the revert window"
        ) from None
    if not cancelled.ok:
        raise OperationError(
            f"{host.name}: the revert timer fired before a fresh login confirmed the sshd "
            f"change (bulwark.ssh.revert_after is {inventory_host.settings.ssh.revert_after} s): "
            "the host is back on its previous sshd config; raise revert_after and run again"
        )
    store.record(proof)


@deploy("SSH")
def ssh(inventory_host: InventoryHost | None = None) -> None:
    inventory_host = inventory_host or current()
    conf = inventory_host.settings
    script = render("ssh/bulwark-ssh-revert.sh.j2", backup=BACKUP, reverted_mark=REVERTED_MARK)
    installed = [ConfigFile(REVERT_SCRIPT, script, mode="755")]
    if conf.ssh.banner:
        notice = conf.ssh.banner.rstrip("\n") + "\n"
        # The same notice on the console (/etc/issue), which otherwise names the OS release.
        installed += [ConfigFile("/etc/issue.net", notice), ConfigFile("/etc/issue", notice)]
    config_files(
        name="sshd revert script" + (" and login banners" if conf.ssh.banner else ""),
        files=installed,
    )
    change = guarded_sshd_change(
        name="Harden sshd (guarded: reverts unless a fresh login confirms)",
        inventory_host=inventory_host,
    )
    python.call(
        name=f"Fresh login as {inventory_host.user} on port {conf.ssh.port} cancels the revert",
        function=confirm_fresh_login,
        inventory_host=inventory_host,
        port=conf.ssh.port,
        _if=change.did_change,
    )
