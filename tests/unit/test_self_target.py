"""The guard that keeps bulwark off the machine it runs on judges addresses, not spellings; the
lab's forwarded ports are the one exception, and only while their qemu runs. Production code
reads the lab through its read-only port lookup alone."""

from __future__ import annotations

import ast
import ipaddress
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from bulwark.errors import ConfigError
from bulwark.hosts.safety import is_this_machine, own_addresses, vet
from bulwark.hosts.ssh import Target
from bulwark.lab.ports import lab_ports

PACKAGE = Path(__file__).parents[2] / "bulwark"


def loopback_names_in_etc_hosts() -> list[str]:
    names = []
    for line in Path("/etc/hosts").read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) > 1 and ipaddress.ip_address(fields[0]).is_loopback:
            names += fields[1:]
    return names


def interface_addresses() -> list[str]:
    return sorted(
        entry.address.split("%")[0]
        for entries in psutil.net_if_addrs().values()
        for entry in entries
        if entry.family in (socket.AF_INET, socket.AF_INET6)
    )


THIS_MACHINE = [
    "127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0.0.0.0", "0", "::",
    "::1", "::ffff:127.0.0.1", "localhost", "LOCALHOST", "LocalHost.", "ip6-localhost",
    socket.gethostname(), socket.gethostname().upper(),
    *loopback_names_in_etc_hosts(), *interface_addresses(),
]  # fmt: skip


@pytest.mark.parametrize("name", THIS_MACHINE)
def test_every_way_of_naming_this_machine_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=r"this machine|cannot resolve"):
        vet(Target(name, 22))


def test_an_unresolvable_name_is_refused_before_any_connection() -> None:
    with pytest.raises(ConfigError, match=r"cannot resolve host 'nowhere\.invalid'"):
        vet(Target("nowhere.invalid"))


def test_a_remote_address_passes_and_is_where_connections_go() -> None:
    vetted = vet(Target("203.0.113.9", 2222))
    assert vetted.address == "203.0.113.9"
    assert vetted == Target("203.0.113.9", 2222)  # the same endpoint for pins and proofs


def test_a_given_address_is_judged_too() -> None:
    with pytest.raises(ConfigError, match="this machine"):
        vet(Target("web1.example", 22, address="127.0.0.1"))


@pytest.mark.parametrize(
    ("address", "local"),
    [("::ffff:127.0.0.5", True), ("::ffff:203.0.113.9", False), ("127.8.9.10", True),
     ("0.0.0.0", True), ("::", True), ("203.0.113.9", False), ("2001:db8::1", False)],
)  # fmt: skip
def test_loopback_unspecified_and_mapped_forms_are_this_machine(address: str, local: bool) -> None:
    assert is_this_machine(ipaddress.ip_address(address), frozenset()) is local


def test_own_interface_addresses_are_this_machine() -> None:
    own = own_addresses()
    for address in interface_addresses():
        assert is_this_machine(ipaddress.ip_address(address), own)


@pytest.fixture
def fake_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, Path]]:
    """A lab VM's record and a live process whose command line forwards its port, as qemu's
    does (`hostfwd=tcp:127.0.0.1:PORT-:22`)."""
    monkeypatch.setenv("BULWARK_STATE_DIR", str(tmp_path))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", f"hostfwd=tcp:127.0.0.1:{port}-:22"]
    )
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    while b"hostfwd" not in cmdline.read_bytes():  # until the child has exec'd
        time.sleep(0.01)
    record = tmp_path / "lab" / "vm1" / "vm.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"pid": proc.pid, "ssh_port": port, "forwards": {}}))
    try:
        yield port, record
    finally:
        proc.kill()
        proc.wait()


def test_a_running_lab_vms_forwarded_port_is_the_one_exception(fake_lab: tuple[int, Path]) -> None:
    port, _ = fake_lab
    assert port in lab_ports()
    assert vet(Target("127.0.0.1", port)).address == "127.0.0.1"
    assert vet(Target("localhost", port)).address == "127.0.0.1"  # ::1 is not qemu's
    with pytest.raises(ConfigError, match="this machine"):
        vet(Target("127.0.0.1", port + 1 if port < 65535 else port - 1))
    for address in interface_addresses():
        if not ipaddress.ip_address(address).is_loopback:
            with pytest.raises(ConfigError, match="this machine"):
                vet(Target(address, port))  # qemu listens on 127.0.0.1 only


def test_a_record_proves_nothing_unless_its_qemu_forwards_the_port(
    fake_lab: tuple[int, Path],
) -> None:
    port, record = fake_lab
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "forwards": {"8080": 1}}))  # a port qemu does not forward
    assert lab_ports() == {port}
    record.write_text(json.dumps({**data, "pid": 2**22 + 7}))  # no such process
    assert lab_ports() == frozenset()
    record.write_text("{not json")
    assert lab_ports() == frozenset()
    assert record.exists(), "the lookup deletes nothing"


def test_production_code_reads_the_lab_through_its_port_lookup_only() -> None:
    """hosts, verify, cloud and policy may import bulwark.lab.ports and nothing else of the lab
    (which starts, stops and deletes VMs)."""
    offending = []
    for package in ("hosts", "verify", "cloud", "policy", "settings", "pooler"):
        for path in (PACKAGE / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                for name in names:
                    if name.startswith("bulwark.lab") and not name.startswith("bulwark.lab.ports"):
                        offending.append(f"{path.relative_to(PACKAGE)}: {name}")
    assert not offending, offending


def test_production_commands_load_no_lab_code() -> None:
    code = (
        "import sys, bulwark.cli, bulwark.hosts.harden, bulwark.hosts.bootstrap, "
        "bulwark.verify.run, bulwark.audit; "
        "print(sorted(m for m in sys.modules if m.startswith('bulwark.lab')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['bulwark.lab', 'bulwark.lab.ports']"
