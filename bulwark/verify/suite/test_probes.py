"""Probes from outside the host, over the network, as a stranger would see it. They run after
the inside controls; the brute-force probe is opt-in and runs last of all."""

from __future__ import annotations

import ipaddress
import secrets
import shlex
import time
from typing import Any

import pytest

from bulwark.settings.hosts import HardenSettings
from bulwark.verify.controls import control, not_applicable
from bulwark.verify.probes import (
    Access,
    Endpoint,
    failed_logins,
    offered_methods,
    port_answers,
    ssh_refused,
)
from bulwark.verify.state import UNKNOWN_USER

WEAK_METHODS = {"password", "keyboard-interactive", "none", "hostbased"}
# An unprivileged port nothing declares: a listener is started there to prove UFW drops it.
PROBE_PORT = 8080


@pytest.fixture(scope="module")
def root_access(endpoint: Endpoint) -> Access:
    """Root's methods and key logins, learnt on one connection (UFW rate-limits connections)."""
    keys = [k for k in (*endpoint.probe_keys, endpoint.identity) if k is not None]
    return offered_methods(endpoint, "root", keys)


@control(
    "probe-root-login-refused",
    "From outside: root cannot log in with any key we hold",
    rationale="Proves PermitRootLogin from the network, whatever the config files say.",
)
def test_root_login_refused(root_access: Access) -> None:
    access = root_access
    assert "none" not in access.methods, "root logs in without any credential"
    assert not access.accepted, f"root logged in with {access.accepted[0]}"


@control(
    "probe-no-password-methods",
    "From outside: no user is offered password or keyboard-interactive authentication",
    rationale="What sshd offers before any credential is what a brute-forcer gets.",
)
def test_no_password_methods(
    endpoint: Endpoint, expected: HardenSettings, root_access: Access
) -> None:
    problems = []
    for user in (expected.deploy_user, UNKNOWN_USER, "root"):  # one connection each
        offered = root_access.methods if user == "root" else offered_methods(endpoint, user).methods
        if weak := sorted(WEAK_METHODS & set(offered)):
            problems.append(f"sshd offers {user} {', '.join(weak)} (all: {', '.join(offered)})")
    assert not problems, "; ".join(problems)


@control(
    "probe-undeclared-port-unreachable",
    "From outside: a listener on an undeclared port cannot be reached",
    rationale="Proves the firewall drops what the inventory does not declare.",
)
def test_undeclared_port_unreachable(
    host: Any, endpoint: Endpoint, expected: HardenSettings
) -> None:
    declared = {expected.ssh.port} | {r.port for r in expected.firewall.allow}
    if PROBE_PORT in declared:
        not_applicable(f"port {PROBE_PORT} is declared open")
    outside = endpoint.reach(PROBE_PORT)
    if outside == PROBE_PORT and endpoint.forwarded:
        not_applicable(f"port {PROBE_PORT} is not forwarded to this host")
    marker = secrets.token_hex(8)
    # A one-shot listener that greets with a marker (a handshake alone proves nothing behind NAT).
    listener = (
        "import socket,sys\n"
        "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
        f"s.bind(('0.0.0.0',{PROBE_PORT}));s.listen(4);s.settimeout(20)\n"
        "try:\n c,_=s.accept();c.sendall(sys.argv[1].encode()+b'\\n');c.close()\n"
        "except OSError: pass\n"
    )
    host.run(
        "sh -c %s",
        f"nohup timeout 25 python3 -c {shlex.quote(listener)} {marker} >/dev/null 2>&1 & "
        f"for i in $(seq 100); do ss -Hltn 'sport = :{PROBE_PORT}' | grep -q . && break; "
        "sleep 0.1; done",
    )
    reached = port_answers(endpoint.host, outside, marker.encode(), timeout=4)
    inside = host.run("python3 -c %s %s", _client(PROBE_PORT), marker)
    assert inside.rc == 0 or reached, "the probe listener did not start on the host"
    assert not reached, f"port {PROBE_PORT} answered from outside: the firewall let it through"


def _client(port: int) -> str:
    # Connect from inside so the one-shot listener exits and we learn it was up.
    return (
        "import socket,sys\n"
        f"c=socket.create_connection(('127.0.0.1',{port}),timeout=5)\n"
        "sys.exit(0 if sys.argv[1].encode() in c.recv(64) else 1)\n"
    )


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
