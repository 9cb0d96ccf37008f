"""The opt-in brute-force probe, from outside: it bans this controller for a moment, so it runs
last of all (bulwark/verify/plugin.py), in a module of its own (the other probes' fixtures are
not set up again for it)."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import pytest

from bulwark.verify.controls import control, not_applicable
from bulwark.verify.probes import Endpoint, failed_logins, ssh_refused

# sudo drops SSH_CLIENT: find it in the nearest ancestor of this shell that has it (the login
# shell sshd started for this connection).
CONTROLLER_ADDRESS = (
    'p=$$; while [ "$p" -gt 1 ]; do '
    "c=$(tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | sed -n 's/^SSH_CLIENT=//p'); "
    '[ -n "$c" ] && { echo "${c%% *}"; break; }; '
    "p=$(awk '{print $4}' /proc/$p/stat); done"
)


def _ignored_by(client: str, ignoreip: str) -> str | None:
    """The ignoreip entry that covers `client`, if any."""
    address = ipaddress.ip_address(client)
    for entry in ignoreip.replace(",", " ").split():
        try:
            if address in ipaddress.ip_network(entry.strip("`-| "), strict=False):
                return entry
        except ValueError:
            continue
    return None


@pytest.mark.ban_probe
@control(
    "probe-fail2ban-bans",
    "From outside: a brute-forcer is banned, then let back in",
    rationale="Proves fail2ban reads sshd's failures and the firewall enforces its bans.",
)
def test_fail2ban_bans(host: Any, endpoint: Endpoint, pytestconfig: pytest.Config) -> None:
    if not pytestconfig.getoption("bulwark_ban_probe"):
        not_applicable("opt-in: run with --ban-probe (it bans this controller for a moment)")
    client = host.run("sh -c %s", CONTROLLER_ADDRESS).stdout.strip()
    assert client, "could not learn this controller's address as the host sees it"
    ignored = _ignored_by(client, host.run("fail2ban-client get sshd ignoreip").stdout)
    if ignored is not None and ignored not in (client, f"{client}/32"):
        not_applicable(f"{client} is inside ignoreip {ignored}: fail2ban never bans it")
    if ignored is not None:  # the operator's own address: lift it for the probe only
        host.run("fail2ban-client set sshd delignoreip %s", ignored)
    try:
        failed_logins(endpoint, attempts=12)
        deadline = time.monotonic() + 60
        while not ssh_refused(endpoint) and time.monotonic() < deadline:
            failed_logins(endpoint, attempts=3)
            time.sleep(2)
        banned = host.run("fail2ban-client status sshd").stdout
        assert client in banned, f"{client} is not banned after repeated failures:\n{banned}"
        assert ssh_refused(endpoint), "banned, but a new connection still reaches sshd"
    finally:
        # The control connection predates the ban (established traffic passes): unban with it.
        restore = f"fail2ban-client set sshd unbanip {client}; "
        restore += f"fail2ban-client set recidive unbanip {client} 2>/dev/null; "
        if ignored is not None:
            restore += f"fail2ban-client set sshd addignoreip {ignored}; "
        host.run("sh -c %s", restore + "true")  # fail2ban-client exits 255 on a missing jail
    assert not ssh_refused(endpoint), "still refused after the unban"
