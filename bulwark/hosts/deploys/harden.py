"""The whole baseline, in a lockout-safe order: packages, firewall (SSH allowed first), SSH
(guarded), fail2ban, security updates, kernel and file system, accounts and the audit trail,
PgBouncer when declared, and last AIDE's first baseline of the hardened host.

    pyinfra hosts/prod.py bulwark.hosts.deploys.harden.harden
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import DeployError, OperationError, deploy, operation
from pyinfra.operations import files

from bulwark.errors import BulwarkError
from bulwark.hosts.deploys.accounts import accounts, integrity_baseline
from bulwark.hosts.deploys.context import current
from bulwark.hosts.deploys.fail2ban import fail2ban
from bulwark.hosts.deploys.firewall import firewall
from bulwark.hosts.deploys.kernel import kernel
from bulwark.hosts.deploys.packages import packages
from bulwark.hosts.deploys.pgbouncer import pgbouncer
from bulwark.hosts.deploys.ssh import ssh
from bulwark.hosts.deploys.updates import updates
from bulwark.hosts.facts import LoginContext
from bulwark.hosts.inventory import InventoryHost, login_refusal, preflight
from bulwark.hosts.operations import UPLOAD_DIR

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


@deploy("bulwark harden")
def harden() -> None:
    try:
        inventory_host = current()
        preflight([inventory_host])  # before any operation exists: refusal changes nothing
    except BulwarkError as exc:
        raise DeployError(str(exc)) from None
    own_login_survives(
        name="This run's own login survives the new settings", inventory_host=inventory_host
    )
    files.directory(
        name="bulwark state and upload directory",
        path=PYINFRA_TMP,
        user=inventory_host.user,
        group=inventory_host.user,
        mode="700",
        _sudo=True,
    )
    # Each area gets the host validated once, here; run alone (pyinfra ... deploys.ssh.ssh) an
    # area validates it itself.
    packages(_temp_dir=PYINFRA_TMP)
    for area in (firewall, ssh, fail2ban, updates, kernel, accounts, pgbouncer):
        area(inventory_host=inventory_host, _temp_dir=PYINFRA_TMP)
    if inventory_host.settings.audit.file_integrity:
        integrity_baseline(_temp_dir=PYINFRA_TMP)
