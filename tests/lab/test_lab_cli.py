"""The lab and bootstrap as an operator drives them: `bulwark lab up/list/ssh/down`, `bootstrap`."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paramiko
import pytest

from bulwark.hosts.keys import fingerprint, load_key
from bulwark.hosts.ssh import KnownHosts, Login, Session, connect
from bulwark.lab import vm as lab
from bulwark.lab.inventory import host_data, write_inventory
from tests.lab import helpers
from tests.lines import PROGRESS, said
from tests.schemas import check


def bulwark(
    *args: str, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run the installed `bulwark` console script, as a user would."""
    exe = Path(sys.executable).with_name("bulwark")
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_trixie_lab_up_bootstrap_list_down(tmp_path: Path) -> None:
    up = bulwark(
        "lab", "up", "--distro", "trixie", "--auth", "password", "--forward", "8080", "--json"
    )
    assert up.returncode == 0, up.stderr
    vm = check("lab-up", up.stdout)
    # Without a terminal, the live view is time-stamped lines: each step, then the count.
    steps = [line for line in up.stderr.splitlines() if PROGRESS.match(line)]
    assert any(" lab up a trixie VM: booting " in line for line in steps), up.stderr
    assert re.search(r" lab up a trixie VM: done: \d+ steps done$", steps[-1]), up.stderr
    try:
        assert vm["distro"] == "trixie"
        assert set(vm["forwards"]) == {"8080"}
        # The host keys are pinned already, each one the console printed; `lab ssh` below
        # logs in with OpenSSH's strict checking, nothing trusted on first use.
        pinned_keys = paramiko.HostKeys(vm["known_hosts"]).lookup(
            f"[127.0.0.1]:{vm['ssh']['port']}"
        )
        assert pinned_keys is not None
        assert {fingerprint(k) for k in pinned_keys.values()} == set(
            vm["host_key_fingerprints"].values()
        )
        listed = check("lab-list", bulwark("lab", "list", "--json").stdout)
        assert vm["name"] in [v["name"] for v in listed]

        os_release = bulwark("lab", "ssh", vm["name"], "cat", "/etc/os-release")
        assert os_release.returncode == 0, os_release.stderr
        assert "trixie" in os_release.stdout

        password = Path(vm["root_password_file"]).read_text().strip()
        args = [
            "bootstrap", "127.0.0.1", "--port", str(vm["ssh"]["port"]),
            "--password-env", "LAB_ROOT_PASSWORD",
            "--deploy-key", str(tmp_path / "operator"),
            "--trust-dir", str(tmp_path / "trust"), "--json", "--yes",
        ]  # fmt: skip
        first = bulwark(*args, env={"LAB_ROOT_PASSWORD": password})
        assert first.returncode == 0, first.stderr
        assert re.search(r" bootstrap \S+: done: 6 of 6 steps done$", first.stderr, re.M), (
            first.stderr
        )
        assert re.search(r" bootstrap \S+: user deploy$", first.stderr, re.M), first.stderr
        report = check("bootstrap", first.stdout)
        assert report["changed"] is True
        assert report["proof"]["user"] == "deploy"
        assert password not in first.stdout + first.stderr
        assert (tmp_path / "operator").stat().st_mode & 0o777 == 0o600
        pinned = (tmp_path / "trust" / "known_hosts").read_text()
        assert f"[127.0.0.1]:{vm['ssh']['port']}" in pinned

        second = bulwark(*args, env={"LAB_ROOT_PASSWORD": password})
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)["changes"] == []
    finally:
        down = bulwark("lab", "down", vm["name"], "--json")
    assert down.returncode == 0, down.stderr
    assert check("lab-down", down.stdout) == {"stopped": [vm["name"]]}
    assert vm["name"] not in [v.name for v in lab.running()]
    assert not Path(vm["directory"]).exists()


@pytest.fixture(scope="module")
def demo_vps() -> Iterator[dict[str, Any]]:
    """`bulwark demo --keep`: a fresh VPS booted, bootstrapped, hardened with the default
    settings (UFW's rate limit on, no ignoreip) and verified, then left running for the tests
    that need such a host; stopped at the end."""
    # A whole fresh VPS on TCG: boot, bootstrap, first harden (the longest part), re-run, verify.
    result = bulwark("demo", "--keep", "--json", timeout=2400)
    try:
        data = check("demo", result.stdout)
    except ValueError:
        pytest.fail(f"the demo printed no JSON (exit {result.returncode}):\n{result.stderr}")
    try:
        yield {"exit": result.returncode, "stderr": result.stderr, **data}
    finally:
        down = bulwark("lab", "down", data["vm"]["name"])
        assert down.returncode == 0, down.stderr


def test_demo_boots_bootstraps_hardens_and_verifies_a_fresh_vps(demo_vps: dict[str, Any]) -> None:
    data = demo_vps
    assert data["exit"] == 0, data["stderr"]
    assert data["bootstrap"]["proof"]["user"] == "deploy"
    assert data["rerun"]["changes"] == []
    assert data["host_key_confirmed"] is True
    assert data["harden"]["changed"] > 0
    assert data["root_login_refused"] is True
    (host,) = data["verify"]["hosts"]
    assert host["summary"]["fail"] == 0, [c for c in host["controls"] if c["status"] != "pass"]
    assert host["summary"]["error"] == 0
    assert host["summary"]["pass"] >= 100
    assert data["vm"]["name"] in [v.name for v in lab.running()], "--keep keeps it"
    # Progress without a terminal: the steps, the areas being hardened, the end.
    steps = [line for line in data["stderr"].splitlines() if PROGRESS.match(line)]
    assert any(
        line.endswith(
            "demo a bookworm lab VPS: hardening with pyinfra (several minutes "
            "under emulation: apt dominates)"
        )
        for line in steps
    ), steps
    assert any(" demo a bookworm lab VPS: SSH (" in line for line in steps), steps
    assert re.search(r"demo a bookworm lab VPS: done: \d+ steps done$", steps[-1]), steps


@contextmanager
def deploy_session(data: dict[str, Any]) -> Iterator[Session]:
    """One session as the deploy user for all of a test's checks: each new connection would
    count against the UFW rate limit the test is about."""
    vm = lab.find(data["vm"]["name"])
    login = Login("deploy", key=load_key(Path(data["operator_key"])))
    with connect(vm.target, login, KnownHosts(vm.known_hosts)) as session:
        yield session


CONTROLLER = "10.0.2.2"  # every connection from the host reaches a lab guest from here
ATTACKER = "198.51.100.66"  # a second machine inside the guest: a network namespace
ATTACKER_NET = (
    "ip netns add bulwark-attacker && ip link add bw-host type veth peer name bw-attacker && "
    "ip link set bw-attacker netns bulwark-attacker && "
    "ip addr add 198.51.100.1/24 dev bw-host && ip link set bw-host up && "
    f"ip netns exec bulwark-attacker ip addr add {ATTACKER}/24 dev bw-attacker && "
    "ip netns exec bulwark-attacker ip link set bw-attacker up"
)
ATTACK = (
    "for i in 1 2 3 4 5 6 7; do ip netns exec bulwark-attacker ssh -o BatchMode=yes "
    "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 "
    "scanner$i@198.51.100.1 true; done; true"
)


def test_five_verifies_then_harden_never_ban_or_block_the_operator(
    demo_vps: dict[str, Any], tmp_path: Path
) -> None:
    """With the default settings, verify's probes fail logins (fail2ban counts them) and open
    new connections (UFW limits them): five verifies in a row and then a harden all succeed,
    fail2ban counts none of the controller's probes, UFW refuses none of its connections, and
    a brute-forcer from another address is still banned."""
    vm = lab.find(demo_vps["vm"]["name"])
    inv = vm.directory / "inventory.py"
    with deploy_session(demo_vps) as s:
        # The demo's own verify and this session opened five connections just now: let them
        # leave UFW's 30 s window, so that the count below is the five verifies' and harden's.
        time.sleep(31)
        start = s.run("date +%s").stdout.strip()
        found = f"grep -c 'Found {CONTROLLER}' /var/log/fail2ban.log || true"
        counted_before = int(s.run(found, sudo=True).stdout)
        for i in range(5):
            done = bulwark("verify", str(inv), "--json", "--out", str(tmp_path / f"v{i}.json"))
            assert done.returncode == 0, f"verify {i + 1}: {done.stdout}{done.stderr}"
        harden = bulwark("harden", str(inv), "--yes", "--json")
        assert harden.returncode == 0, harden.stdout[-3000:] + harden.stderr
        assert helpers.changed_ops(harden.stdout) == 0
        status = s.run("fail2ban-client status sshd", sudo=True).stdout
        assert CONTROLLER not in status, status
        assert int(s.run(found, sudo=True).stdout) == counted_before, "probes were counted"
        blocked = s.run(
            f"journalctl -k --since @{start} | grep -c 'UFW LIMIT BLOCK' || true", sudo=True
        )
        assert int(blocked.stdout) == 0, "UFW's rate limit refused a connection"
        ignored = s.run("fail2ban-client get sshd ignoreip", sudo=True).stdout
        assert CONTROLLER in ignored  # the window, until its timer runs out
        timer = s.run("systemctl list-timers --all --no-legend 'bulwark-verify-f2b-*'").stdout
        assert "bulwark-verify-f2b-10-0-2-2.timer" in timer

        s.run(ATTACKER_NET, sudo=True)
        try:
            banned = ""
            deadline = time.monotonic() + 120
            while ATTACKER not in banned and time.monotonic() < deadline:
                s.run(ATTACK, sudo=True, timeout=120)
                banned = s.run("fail2ban-client status sshd", sudo=True).stdout
            assert ATTACKER in banned, f"the brute-forcer was not banned:\n{banned}"
        finally:
            s.run(
                f"fail2ban-client set sshd unbanip {ATTACKER}; ip netns del bulwark-attacker; "
                "ip link del bw-host; true",
                sudo=True,
            )


def test_an_inventory_host_that_resolves_to_this_machine_stops_the_run_first(
    demo_vps: dict[str, Any], tmp_path: Path
) -> None:
    """The controller's own host name (/etc/hosts: 127.0.0.1) on a port that is no lab VM's,
    next to a real lab VPS: harden and verify refuse the inventory before any host is
    contacted, the VPS included."""
    vm = lab.find(demo_vps["vm"]["name"])
    key = Path(demo_vps["operator_key"])
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.settimeout(1)
        port = listener.getsockname()[1]
        self_host = {**host_data(vm, user="deploy", key=key), "bulwark_forwarded_ports": {}}
        self_host |= {"ssh_hostname": socket.gethostname(), "ssh_port": port}
        inv = write_inventory(
            tmp_path / "inventory.py",
            {"lab": host_data(vm, user="deploy", key=key), "controller": self_host},
        )
        with deploy_session(demo_vps) as s:
            # Everything sshd logs from here on (this session's own login is before it).
            last = s.run("journalctl -u ssh -n 1 --show-cursor -q", sudo=True).stdout
            cursor = last.rsplit("-- cursor: ", 1)[1].strip()
            for command in (("harden", str(inv), "--yes"), ("verify", str(inv))):
                done = bulwark(*command)
                assert done.returncode == 2, done.stdout + done.stderr
                assert said(done.stderr) == [
                    f"error: controller: {socket.gethostname()}:{port} resolves to 127.0.0.1, "
                    "this machine, not a lab VM: bulwark never bootstraps, hardens or verifies "
                    "the machine it runs on (use `bulwark lab up` for a local test host)"
                ]
            logins = s.run(
                # sshd's own lines start with it; sudo's record of this very command does not.
                f"journalctl -u ssh --after-cursor={shlex.quote(cursor)} -o cat | "
                "grep '^Accepted publickey' || true",
                sudo=True,
            )
            assert logins.stdout.strip() == "", f"the lab VPS was logged in to: {logins.stdout}"
        with pytest.raises(TimeoutError):
            listener.accept()  # nor was this machine
