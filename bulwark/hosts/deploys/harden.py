"""The whole baseline, in a lockout-safe order: packages, firewall (SSH allowed first), SSH
(guarded), fail2ban, security updates, kernel and file system, accounts and the audit trail,
PgBouncer when declared, and last AIDE's first baseline of the hardened host.

    pyinfra hosts/prod.py bulwark.hosts.deploys.harden.harden
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import DeployError, OperationError, deploy, operation
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import FindInFile, Sha1File
from pyinfra.facts.server import Arch, LinuxDistribution

from bulwark.errors import BulwarkError
from bulwark.hosts.commands import SUID_DENYLIST
from bulwark.hosts.deploys import accounts as acc
from bulwark.hosts.deploys.accounts import accounts, integrity_baseline
from bulwark.hosts.deploys.context import current
from bulwark.hosts.deploys.fail2ban import JAIL_LOCAL, fail2ban
from bulwark.hosts.deploys.firewall import UFW_DEFAULTS, firewall
from bulwark.hosts.deploys.kernel import ROOT_ONLY, SUDO_DEFAULTS, TMPFS_PATHS, kernel
from bulwark.hosts.deploys.packages import packages
from bulwark.hosts.deploys.pgbouncer import pgbouncer
from bulwark.hosts.deploys.ssh import DROPIN, REVERT_UNIT, ssh
from bulwark.hosts.deploys.updates import updates
from bulwark.hosts.facts import (
    AideBaseline,
    AptSources,
    CommandsExist,
    CompilerModes,
    FactKey,
    Fail2banState,
    FileStates,
    FirstUpgrade,
    LoginContext,
    LoginDefs,
    MountStates,
    PathModes,
    ProcExemptions,
    SshdState,
    UfwStatus,
    UnitStates,
    fact_key,
)
from bulwark.hosts.inventory import InventoryHost, login_refusal, preflight
from bulwark.hosts.operations import (
    SHARED_FILES,
    SHARED_PROGRAMS,
    SHARED_UNITS,
    UPLOAD_DIR,
    fact,
    prefetch,
)

PYINFRA_TMP = UPLOAD_DIR


@operation()
def own_login_survives(inventory_host: InventoryHost):  # type: ignore[no-untyped-def]
    """Refuse, before anything on the host changes, a firewall or sshd setting that would shut
    out the very login this run uses (its source address, its user's groups).

    + inventory_host: the host as the inventory describes it
    """
    seen = host.get_fact(LoginContext, _sudo=False)  # sudo would drop SSH_CLIENT
    refusal = login_refusal(inventory_host, seen.client, list(seen.groups))
    if refusal:
        raise OperationError(refusal + "; nothing was changed")
    host.noop(
        f"{inventory_host.user} from {seen.client or 'here'} stays allowed by the new settings"
    )
    yield from ()  # an operation is a generator of commands; this one only reads


@operation()
def upload_directory(path: str, user: str):  # type: ignore[no-untyped-def]
    """The login user's private directory (0700) that files are uploaded to before sudo
    installs them: one command where pyinfra's files.directory takes four.

    + path: the directory
    + user: the login user, its owner (group of the same name)
    """
    if fact(PathModes, paths=[path]).get(path) == f"700:{user}:{user}":
        host.noop(f"{path} is {user}'s alone")
        return
    q, owner = shlex.quote(path), shlex.quote(f"{user}:{user}")
    yield f"mkdir -p {q} && chown {owner} {q} && chmod 700 {q}"


# Every fact the areas ask for on a converged host, exactly as they ask (class and arguments):
# read in one remote command before the first operation, instead of one command each (a sudo
# and a shell: 0.4 s on a small emulated host). A fact missing here is still read, separately.
READ_AHEAD: list[FactKey] = [
    fact_key(LinuxDistribution, {}),
    fact_key(Arch, {}),
    fact_key(CommandsExist, {"programs": SHARED_PROGRAMS}),
    fact_key(FileStates, {"paths": sorted(SHARED_FILES)}),
    fact_key(UnitStates, {"units": sorted(SHARED_UNITS)}),
    fact_key(AptSources, {}),
    fact_key(FirstUpgrade, {}),
    fact_key(DebPackages, {}),
    fact_key(FindInFile, {"path": UFW_DEFAULTS, "pattern": "^IPV6="}),
    fact_key(UfwStatus, {}),
    fact_key(SshdState, {"dropin": DROPIN, "revert_unit": REVERT_UNIT}),
    fact_key(Fail2banState, {"jail_local": JAIL_LOCAL}),
    fact_key(MountStates, {"paths": list(TMPFS_PATHS)}),
    fact_key(MountStates, {"paths": ["/proc"]}),
    fact_key(ProcExemptions, {}),
    fact_key(PathModes, {"paths": [UPLOAD_DIR]}),
    fact_key(PathModes, {"paths": [*ROOT_ONLY, *sorted(SUID_DENYLIST)]}),
    fact_key(Sha1File, {"path": SUDO_DEFAULTS}),
    fact_key(LoginDefs, {}),
    fact_key(CompilerModes, {}),
    fact_key(FindInFile, {"path": acc.DEBSUMS_DEFAULTS, "pattern": "^CRON_CHECK="}),
    fact_key(FindInFile, {"path": acc.SYSSTAT_DEFAULTS, "pattern": acc.SYSSTAT_ENABLED}),
    fact_key(AideBaseline, {}),
]


@deploy("bulwark harden")
def harden() -> None:
    try:
        inventory_host = current()
        preflight([inventory_host])  # before any operation exists: refusal changes nothing
    except BulwarkError as exc:
        raise DeployError(str(exc)) from None
    prefetch(READ_AHEAD)
    own_login_survives(
        name="This run's own login survives the new settings", inventory_host=inventory_host
    )
    upload_directory(
        name="bulwark state and upload directory", path=PYINFRA_TMP, user=inventory_host.user
    )
    # Each area gets the host validated once, here; run alone (pyinfra ... deploys.ssh.ssh) an
    # area validates it itself.
    packages(_temp_dir=PYINFRA_TMP)
    for area in (firewall, ssh, fail2ban, updates, kernel, accounts, pgbouncer):
        area(inventory_host=inventory_host, _temp_dir=PYINFRA_TMP)
    if inventory_host.settings.audit.file_integrity:
        integrity_baseline(_temp_dir=PYINFRA_TMP)
