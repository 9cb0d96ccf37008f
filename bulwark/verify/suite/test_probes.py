"""Probes from outside the host, over the network, as a stranger would see it. They run first,
while the inside controls' snapshot is read in the background; the brute-force probe is opt-in
and runs last of all."""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from bulwark.settings.hosts import HardenSettings
from bulwark.verify.controls import control, not_applicable
from bulwark.verify.probes import (
    Access,
    Endpoint,
    offered_methods,
    port_answers,
)
from bulwark.verify.state import UNKNOWN_USER, HostState
from bulwark.verify.window import OPEN_WINDOW, PROBE_CONNECTIONS, WINDOW_SECONDS

WEAK_METHODS = {"password", "keyboard-interactive", "none", "hostbased"}
# An unprivileged port nothing declares: a listener is started there to prove UFW drops it.
PROBE_PORT = 8080


@pytest.fixture(scope="module")
def fail2ban_window(host: Any, state: HostState) -> str:
    """Before any probe fails a login: fail2ban ignores this controller for a while, and the
    probes wait until UFW's rate limit has room for them, so that verify never bans or blocks
    its own operator (bulwark/verify/window.py says how and why). The snapshot starts first,
    so its reads overlap this one."""
    state.start()
    done = host.run(
        "python3 -c %s window %s %s", OPEN_WINDOW, str(WINDOW_SECONDS), str(PROBE_CONNECTIONS)
    )
    return str(done.stdout.strip())


@pytest.fixture(scope="module")
def ssh_access(
    endpoint: Endpoint, expected: HardenSettings, state: HostState, fail2ban_window: str
) -> Iterator[dict[str, Future[Access]]]:
    """What sshd offers root (and whether any key we hold logs root in), the deploy user and a
    user that does not exist: one connection each (sshd refuses a change of user within one),
    all three at once, so the round trips overlap, and the inside controls' snapshot is read
    meanwhile."""
    state.start()
    keys = [k for k in (*endpoint.probe_keys, endpoint.identity) if k is not None]
    with ThreadPoolExecutor(max_workers=3) as pool:
        yield {
            "root": pool.submit(offered_methods, endpoint, "root", keys),
            expected.deploy_user: pool.submit(offered_methods, endpoint, expected.deploy_user),
            UNKNOWN_USER: pool.submit(offered_methods, endpoint, UNKNOWN_USER),
        }


@pytest.fixture(scope="module")
def root_access(ssh_access: dict[str, Future[Access]]) -> Access:
    return ssh_access["root"].result()


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
def test_no_password_methods(ssh_access: dict[str, Future[Access]]) -> None:
    problems = []
    for user, access in ssh_access.items():
        offered = access.result().methods
        if weak := sorted(WEAK_METHODS & set(offered)):
            problems.append(f"sshd offers {user} {', '.join(weak)} (all: {', '.join(offered)})")
    assert not problems, "; ".join(problems)


@dataclass
class PortResult:
    listening: bool  # the listener was up on the host
    reached: bool  # its greeting came back from outside


def _listener(marker: str) -> str:
    """A one-shot listener that greets with a marker (a handshake alone proves nothing behind
    NAT or port forwarding: only the greeting does): systemd's socket activator (a C program,
    quick to start on a small host), else Python."""
    python = (
        "import socket,sys\n"
        "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
        f"s.bind(('0.0.0.0',{PROBE_PORT}));s.listen(4);s.settimeout(20)\n"
        "try:\n c,_=s.accept();c.sendall(sys.argv[1].encode()+b'\\n');c.close()\n"
        "except OSError: pass\n"
    )
    return (
        "if command -v systemd-socket-activate >/dev/null; then "
        f"exec timeout 25 systemd-socket-activate -l {PROBE_PORT} --inetd -a echo {marker}; "
        f"else exec timeout 25 python3 -c {shlex.quote(python)} {marker}; fi"
    )


def _try_undeclared_port(host: Any, state: HostState, address: str, outside: int) -> PortResult:
    # Not before the host's listening sockets are read: this listener must not be counted.
    state.early.wait(timeout=120)
    marker = secrets.token_hex(8)
    started = host.run(
        "sh -c %s",
        f"nohup sh -c {shlex.quote(_listener(marker))} >/dev/null 2>&1 & "
        f'echo "pid $!"; for i in $(seq 100); do '
        f"ss -Hltn 'sport = :{PROBE_PORT}' | grep -q . && {{ echo listening; break; }}; "
        "sleep 0.1; done",
    ).stdout.split()
    listening = "listening" in started
    try:
        reached = listening and port_answers(address, outside, marker.encode(), timeout=4)
    finally:
        if "pid" in started:  # the listener, if nothing reached it
            host.run("kill %s 2>/dev/null", started[started.index("pid") + 1])
    return PortResult(listening, reached)


@pytest.fixture(scope="module", autouse=True)
def port_probe(
    host: Any,
    endpoint: Endpoint,
    expected: HardenSettings,
    state: HostState,
    ssh_access: dict[str, Future[Access]],  # started first: all of it runs at once
) -> Iterator[Future[PortResult] | str]:
    """Start a listener on an undeclared port and try it from outside, in the background: a
    dropped connection can only be told by waiting for a greeting that never comes, and that
    wait overlaps the SSH probes and the snapshot. A string says why it does not apply."""
    declared = {expected.ssh.port} | {r.port for r in expected.firewall.allow}
    outside = endpoint.reach(PROBE_PORT)
    if PROBE_PORT in declared:
        yield f"port {PROBE_PORT} is declared open"
    elif PROBE_PORT not in endpoint.forwarded and (
        endpoint.forwarded or endpoint.port != expected.ssh.port
    ):
        # SSH itself is reached through a forward (NAT, a lab VM): the same port number on the
        # address we connect to is some other machine's, not this host's.
        yield f"the host is reached through port forwarding and port {PROBE_PORT} is not forwarded"
    else:
        with ThreadPoolExecutor(max_workers=1) as pool:
            yield pool.submit(_try_undeclared_port, host, state, endpoint.host, outside)


@control(
    "probe-undeclared-port-unreachable",
    "From outside: a listener on an undeclared port cannot be reached",
    rationale="Proves the firewall drops what the inventory does not declare.",
)
def test_undeclared_port_unreachable(port_probe: Future[PortResult] | str) -> None:
    if isinstance(port_probe, str):
        not_applicable(port_probe)
        return
    result = port_probe.result()
    assert result.listening, "the probe listener did not start on the host"
    assert not result.reached, (
        f"port {PROBE_PORT} answered from outside: the firewall let it through"
    )
