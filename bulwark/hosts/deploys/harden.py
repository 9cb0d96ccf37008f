"""The whole baseline, in a lockout-safe order: packages, firewall (SSH allowed first), SSH
(guarded), fail2ban, security updates, kernel and file system, and PgBouncer when declared.

    pyinfra hosts/prod.py bulwark.hosts.deploys.harden.harden
"""

from __future__ import annotations

from pyinfra.api import DeployError, deploy
from pyinfra.operations import files

from bulwark.errors import BulwarkError
from bulwark.hosts.deploys.context import current
from bulwark.hosts.deploys.fail2ban import fail2ban
from bulwark.hosts.deploys.firewall import firewall
from bulwark.hosts.deploys.kernel import kernel
from bulwark.hosts.deploys.packages import packages
from bulwark.hosts.deploys.pgbouncer import pgbouncer
from bulwark.hosts.deploys.ssh import ssh
from bulwark.hosts.deploys.updates import updates
from bulwark.hosts.inventory import preflight

# pyinfra uploads through a temp dir; /tmp becomes noexec, so use our own, private to the user.
PYINFRA_TMP = "/var/lib/bulwark/tmp"


@deploy("bulwark harden")
def harden() -> None:
    try:
        conn = current()
        preflight([conn])  # before any operation exists: refusal changes nothing
    except BulwarkError as exc:
        raise DeployError(str(exc)) from None
    files.directory(
        name="bulwark state and upload directory",
        path=PYINFRA_TMP,
        user=conn.user,
        group=conn.user,
        mode="700",
        _sudo=True,
    )
    for area in (packages, firewall, ssh, fail2ban, updates, kernel, pgbouncer):
        area(_temp_dir=PYINFRA_TMP)
