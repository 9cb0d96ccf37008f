"""Inventories are read as pyinfra reads them and checked before any host is contacted."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulwark.errors import ConfigError
from bulwark.hosts.bootstrap import AccessProof, TrustStore
from bulwark.hosts.inventory import load, preflight
from bulwark.hosts.keys import ensure_key


def write(tmp_path: Path, data: str, name: str = "prod") -> Path:
    path = tmp_path / f"{name}.py"  # a new name each time: pyinfra caches files it has read
    path.write_text(f"web = [('web1', {data})]\n")
    return path


def test_inventory_hosts_are_loaded_with_settings(tmp_path: Path) -> None:
    inv = write(
        tmp_path,
        "{'ssh_hostname': '203.0.113.7', 'ssh_port': 2200, 'ssh_user': 'deploy',"
        " 'bulwark': {'ssh': {'port': 2222}}, 'bulwark_forwarded_ports': {22: 2200}}",
    )
    (host,) = load(inv)
    assert host.name == "web1"
    assert str(host.target) == "203.0.113.7:2200"
    assert host.settings.ssh.port == 2222
    assert host.sshd_port == 22  # reached through a forward of port 22
    assert host.reach(2222).port == 2222


def test_bad_settings_in_inventory_name_host_and_field(tmp_path: Path) -> None:
    inv = write(tmp_path, "{'bulwark': {'ssh': {'max_auth_tries': 99}}}")
    with pytest.raises(ConfigError, match=r"^web1: bulwark\.ssh\.max_auth_tries: "):
        load(inv)


def test_limit_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no host in .* matches --limit db9"):
        load(write(tmp_path, "{}"), limit="db9")


def test_preflight_refuses_before_contact(tmp_path: Path) -> None:
    key, _ = ensure_key(tmp_path / "op")
    base = f"'ssh_hostname': '203.0.113.7', 'ssh_key': '{key.path}'"
    trust = f"'ssh_known_hosts_file': '{tmp_path / 'known_hosts'}'"
    only_ops = "'bulwark': {'ssh': {'allow_users': ['ops']}}"
    cases = {
        f"{{{base}, {trust}, 'ssh_user': 'root'}}": "ssh_user is root",
        f"{{{base}, {trust}, 'ssh_user': 'deploy', {only_ops}}}": (
            "excludes deploy, the user this run connects as"
        ),
        f"{{{base}, {trust}, 'ssh_user': 'deploy'}}": "no proof that deploy@203.0.113.7",
    }
    for i, (data, message) in enumerate(cases.items()):
        with pytest.raises(ConfigError, match=message):
            preflight(load(write(tmp_path, data, f"case{i}")))
    TrustStore(tmp_path).record(
        AccessProof("203.0.113.7", 22, "deploy", key.fingerprint, "SHA256:x", 0.0)
    )
    preflight(load(write(tmp_path, f"{{{base}, {trust}, 'ssh_user': 'deploy'}}", "proven")))
