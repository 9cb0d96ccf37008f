"""UFW: default deny in, allow out; SSH allowed (rate-limited) before the firewall is enabled;
exactly the declared ports open, from the declared sources; IPv6 too; logging on."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from pyinfra import host, logger
from pyinfra.api import OperationError, deploy, operation

from bulwark.hosts.deploys.context import current
from bulwark.hosts.facts import UfwStatus
from bulwark.hosts.inventory import InventoryHost
from bulwark.hosts.operations import fact, line_set, program_exists
from bulwark.settings.hosts import FirewallSettings, HardenSettings

UFW_DEFAULTS = "/etc/default/ufw"


def wanted_rules(
    fw: FirewallSettings,
    ssh_ports: list[int],
    extra: Sequence[tuple[int, tuple[str, ...]]] = (),
) -> list[str]:
    """The rules as `ufw show added` prints them (so current and wanted compare as strings)."""
    rules = []
    ssh_action = "limit" if fw.ssh_rate_limit else "allow"
    for port in ssh_ports:
        for source in fw.ssh_sources:
            rules.append(_rule(ssh_action, port, "tcp", source))
    for rule in fw.allow:
        for source in rule.sources:
            rules.append(_rule("allow", rule.port, rule.proto, source))
    for port, sources in extra:
        rules.extend(_rule("allow", port, "tcp", source) for source in sources)
    return list(dict.fromkeys(rules))


def _rule(action: str, port: int, proto: str, source: str) -> str:
    if source == "any":
        return f"{action} {port}/{proto}"
    return f"{action} from {source} to any port {port} proto {proto}"


@operation()
def ufw_rules(rules: list[str], logging: str):  # type: ignore[no-untyped-def]
    """Converge UFW to exactly `rules`, then enable it. Rules are added before anything is
    removed or enabled, so the SSH port is always allowed first (enabling UFW without it is the
    classic instant lockout).

    + rules: wanted rules in `ufw show added` form, e.g. "limit 22/tcp"
    + logging: ufw logging level
    """
    state = fact(UfwStatus)
    current = state.rules
    todo = [f"ufw {shlex.join(rule.split())}" for rule in rules if rule not in current]
    todo += [f"ufw delete {_as_words(rule)}" for rule in current if rule not in rules]
    if state.incoming != "deny":
        todo.append("ufw default deny incoming")
    if state.outgoing != "allow":
        todo.append("ufw default allow outgoing")
    if state.logging != logging:
        todo.append(f"ufw logging {logging}")
    if not state.active:
        todo.append("ufw --force enable")  # --force: it would prompt over SSH otherwise
    if not todo:
        host.noop(f"ufw is active with exactly {len(rules)} declared rules")
        return
    # One round trip, in this order; a step that fails stops the rest (no enable after a
    # failed allow).
    yield " && ".join(todo)


def _as_words(rule: str) -> str:
    """A rule as `ufw show added` printed it (shell words: a comment comes quoted), re-quoted
    word by word, so nothing in it (a comment someone wrote) reaches root's shell as code."""
    try:
        return shlex.join(shlex.split(rule))
    except ValueError as err:
        raise OperationError(
            f"ufw lists a rule bulwark cannot read back ({err}): {rule!r}; "
            "remove it by hand with `ufw delete <number>` (see `ufw status numbered`)"
        ) from err


def service_ports(conf: HardenSettings) -> list[tuple[int, tuple[str, ...]]]:
    """Ports the host's services (PgBouncer) open, with the sources allowed to reach them."""
    if conf.pgbouncer is None:
        return []
    return [(conf.pgbouncer.port, conf.pgbouncer.client_ranges)]


@deploy("Firewall")
def firewall(inventory_host: InventoryHost | None = None) -> None:
    inventory_host = inventory_host or current()
    conf = inventory_host.settings
    if program_exists("docker"):
        logger.warning(
            "%s: Docker is installed; ports it publishes bypass UFW: bind them to 127.0.0.1",
            host.name,
        )
    line_set(
        name="UFW filters IPv6 as well" if conf.firewall.ipv6 else "UFW leaves IPv6 alone",
        path=UFW_DEFAULTS,
        pattern="^IPV6=",
        line=f"IPV6={'yes' if conf.firewall.ipv6 else 'no'}",
    )
    # While the port moves, both the port we are connected on and the new one stay open.
    ssh_ports = sorted({inventory_host.sshd_port, conf.ssh.port})
    ufw_rules(
        name=f"UFW: deny in, allow out, SSH on {ssh_ports}, {len(conf.firewall.allow)} more",
        rules=wanted_rules(conf.firewall, ssh_ports, service_ports(conf)),
        logging=conf.firewall.logging,
    )
