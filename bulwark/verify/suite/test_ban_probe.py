"""The opt-in brute-force probe, from outside: it bans this controller for a moment, so it runs
last of all (bulwark/verify/plugin.py), in a module of its own (the other probes' fixtures are
not set up again for it)."""

from __future__ import annotations

import ipaddress
import re
import time
from typing import Any

import pytest

from bulwark.verify.controls import control, not_applicable
from bulwark.verify.probes import Endpoint, failed_logins, ssh_refused
from bulwark.verify.window import OPEN_WINDOW
from bulwark.verify.window_host import LIMIT_HITS

BURST = LIMIT_HITS  # what UFW's limit lets through in 30 s from one source

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
    failures = 0
    try:
        banned, deadline = "", time.monotonic() + 240
        while client not in banned and time.monotonic() < deadline:
            # Paced under UFW's rate limit, so that every try reaches sshd and counts: a try
            # the limit refused would not, and would keep the limit on.
            _room(host, BURST)
            failures += failed_logins(endpoint, attempts=BURST)
            banned = _banned(host, client)
        assert client in banned, f"{client} is not banned after repeated failures:\n{banned}"
        # fail2ban lists the ban as its action starts; the firewall rule follows a moment later.
        assert _enforced(endpoint), "banned, but a new connection still reaches sshd"
    finally:
        # The control connection predates the ban (established traffic passes): unban with it.
        restore = f"fail2ban-client set sshd unbanip {client}; "
        restore += f"fail2ban-client set recidive unbanip {client} 2>/dev/null; "
        if ignored is not None:
            restore += f"fail2ban-client set sshd addignoreip {ignored}; "
        # A ban whose firewall rule was still being written when the unban ran would leave the
        # rule behind, and this controller shut out: take out any that fail2ban no longer has.
        restore += (
            # `ufw status` writes "Anywhere  REJECT  10.0.2.2" (the IN only with verbose).
            f"sleep 2; while ufw status | grep -qE 'REJECT( IN)? +{re.escape(client)}( |$)'; do "
            f"ufw delete reject from {client} to any >/dev/null || break; done; "
        )
        host.run("sh -c %s", restore + "true")  # fail2ban-client exits 255 on a missing jail
    _room(host, 1)  # the tries above are still in UFW's window
    wait = readmit_seconds(failures)
    assert _readmitted(endpoint, wait), f"still refused {wait:.0f} s after the unban"


def _room(host: Any, connections: int) -> None:
    """Wait until `connections` new SSH connections from here fit under UFW's rate limit."""
    host.run("python3 -c %s room %s", OPEN_WINDOW, str(connections))


def _enforced(endpoint: Endpoint, seconds: float = 30) -> bool:
    """Whether new connections are refused within `seconds` (the ban's firewall rule is live)."""
    deadline = time.monotonic() + seconds
    while not ssh_refused(endpoint):
        if time.monotonic() > deadline:
            return False
        time.sleep(2)
    return True


# sshd's own penalty for the probe's failed logins (PerSourcePenalties, OpenSSH >= 9.8: 5 s per
# failed authentication, refused once 15 s have built up, at most 600 s) can outlast the unban:
# on a slow host fail2ban takes longer to ban, the probe sends more rounds, and the penalty
# grows with them (seen once on Debian 13 in CI: 120 s were not enough).
READMIT_SECONDS = 120
PENALTY_PER_FAILURE = 5
PENALTY_MAX = 600
READMIT_PACE = 7  # seconds between tries: at most 5 in UFW's 30 s window (it limits at 6)


def readmit_seconds(failures: int) -> float:
    """How long to wait for readmission after `failures` failed logins: sshd's largest possible
    penalty for them (its default PerSourcePenalties), and never less than READMIT_SECONDS."""
    return max(READMIT_SECONDS, min(PENALTY_MAX, failures * PENALTY_PER_FAILURE) + READMIT_PACE)


def _readmitted(endpoint: Endpoint, seconds: float = READMIT_SECONDS) -> bool:
    """Whether a new SSH connection gets sshd's banner again within `seconds`."""
    deadline = time.monotonic() + seconds
    while ssh_refused(endpoint):
        if time.monotonic() > deadline:
            return False
        time.sleep(READMIT_PACE)
    return True


def _banned(host: Any, client: str, seconds: float = 30) -> str:
    """fail2ban's sshd status once it shows `client` banned, or after `seconds` (fail2ban reads
    the journal a moment after sshd writes it)."""
    deadline = time.monotonic() + seconds
    while True:
        status = str(host.run("fail2ban-client status sshd").stdout)
        if client in status or time.monotonic() > deadline:
            return status
        time.sleep(2)
