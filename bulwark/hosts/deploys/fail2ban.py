"""fail2ban: an sshd jail that works on journald-only hosts, on the real SSH port, banning
through ufw, with a recidive jail. The run fails unless the service is active and the jail loaded.
"""

from __future__ import annotations

import hashlib

from pyinfra import host
from pyinfra.api import deploy, operation

from bulwark.hosts.deploys.context import current
from bulwark.hosts.facts import Fail2banState
from bulwark.hosts.inventory import InventoryHost
from bulwark.hosts.operations import ConfigFile, fact, put_files
from bulwark.hosts.templates import render

JAIL_LOCAL = "/etc/fail2ban/jail.local"
# fail2ban takes a few seconds to load its jails after a restart (longer under emulation). One
# `fail2ban-client status` a second (a Python start each) until its jail list has every jail.
CHECK_JAILS = (
    "for i in $(seq {seconds}); do "
    "if systemctl is-active --quiet fail2ban; then "
    "loaded=$(fail2ban-client status 2>/dev/null | sed -n 's/.*Jail list://p' | tr -d ' \\t'); "
    'missing=""; for jail in {jails}; do case ",$loaded," in *",$jail,"*) ;; '
    '*) missing="$missing $jail" ;; esac; done; [ -z "$missing" ] && exit 0; fi; sleep 1; done; '
    'echo "fail2ban is not active or jails are not loaded:${{missing:- {jails}}}: '
    'see journalctl -u fail2ban" >&2; exit 1'
)


def check_jails(jails: list[str], seconds: int = 60) -> str:
    """Shell that waits up to `seconds` for fail2ban to be active with every jail loaded."""
    return CHECK_JAILS.format(jails=" ".join(jails), seconds=seconds)


@operation()
def jail_config(content: str, jails: list[str]):  # type: ignore[no-untyped-def]
    """Install jail.local when it differs (validated with `fail2ban-client -t` first), restart,
    and require the service active with every jail loaded; also heals a dead fail2ban.

    + content: the jail.local text
    + jails: jails that must be loaded
    """
    state = fact(Fail2banState, jail_local=JAIL_LOCAL)
    current = state.jail_sha1
    wanted = hashlib.sha1(content.encode(), usedforsecurity=False).hexdigest()
    loaded = state.jails
    if current == wanted and loaded is not None and set(jails) <= set(loaded):
        host.noop(f"fail2ban is running with jails {', '.join(sorted(loaded))}")
        return
    if current != wanted:
        yield from put_files([ConfigFile(JAIL_LOCAL + ".bulwark-new", content)])
        yield (
            f"mv {JAIL_LOCAL} {JAIL_LOCAL}.bulwark-old 2>/dev/null; "
            f"mv {JAIL_LOCAL}.bulwark-new {JAIL_LOCAL} && fail2ban-client -t >/dev/null || "
            f"{{ mv {JAIL_LOCAL}.bulwark-old {JAIL_LOCAL} 2>/dev/null; "
            "echo 'fail2ban-client -t rejected jail.local' >&2; exit 1; }; "
            f"rm -f {JAIL_LOCAL}.bulwark-old"
        )
    # Enabled by its package already, as a rule: `enable` reloads systemd and runs update-rc.d
    # for fail2ban's init script too (6 s on a small host), so only when it is not.
    yield (
        "{ systemctl is-enabled --quiet fail2ban || systemctl enable --quiet fail2ban; } && "
        "systemctl restart fail2ban"
    )
    yield check_jails(jails)


@deploy("fail2ban")
def fail2ban(inventory_host: InventoryHost | None = None) -> None:
    conf = (inventory_host or current()).settings
    jails = ["sshd", *(["recidive"] if conf.fail2ban.recidive else [])]
    jail_config(
        name=f"fail2ban: jails {', '.join(jails)} on port {conf.ssh.port}, banning through ufw",
        content=render(
            "fail2ban/jail.local.j2",
            f2b=conf.fail2ban,
            ignoreip=["127.0.0.1/8", "::1", *conf.fail2ban.ignoreip],
            ssh_port=conf.ssh.port,
        ),
        jails=jails,
    )
