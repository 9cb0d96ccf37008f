"""Inventories are read as pyinfra reads them and checked before any host is contacted."""

from __future__ import annotations

import re
from pathlib import Path

import paramiko
import pytest

from bulwark.errors import ConfigError
from bulwark.hosts.bootstrap import AccessProof, TrustStore
from bulwark.hosts.inventory import InventoryHost, from_data, load, login_refusal, preflight
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


def test_the_deploys_accept_the_data_harden_runs_pyinfra_with(tmp_path: Path) -> None:
    # The inventory may not name an ssh_config; harden itself passes /dev/null as one, and the
    # deploys read the host (override included) through from_data, inside pyinfra's run.
    from bulwark.hosts.harden import _command  # noqa: PLC0415

    command = _command(tmp_path / "inv.py", None, dry=False, diff=False)
    at = command.index("ssh_config_file=/dev/null")
    assert command[at - 1] == "--data"
    host = from_data("web1", {"ssh_hostname": "203.0.113.7", "ssh_config_file": "/dev/null"})
    assert str(host.target) == "203.0.113.7"
    with pytest.raises(ConfigError, match=r"^web1: ssh_config_file is not supported: "):
        load(write(tmp_path, "{'ssh_hostname': '203.0.113.7', 'ssh_config_file': '/dev/null'}"))


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
        f"{{{base}, {trust}, 'ssh_user': 'deploy'}}": (
            r"ssh_known_hosts_file .*known_hosts does not exist: run `bulwark bootstrap "
            r"203\.0\.113\.7` first"
        ),
        f"{{{base}, 'ssh_user': 'deploy'}}": (
            "ssh_known_hosts_file is not set: set it to hosts/known_hosts"
        ),
    }
    for i, (data, message) in enumerate(cases.items()):
        with pytest.raises(ConfigError, match=message):
            preflight(load(write(tmp_path, data, f"case{i}")))
    (tmp_path / "known_hosts").write_text("")
    with pytest.raises(ConfigError, match=r"no proof that deploy@203\.0\.113\.7"):
        preflight(load(write(tmp_path, f"{{{base}, {trust}, 'ssh_user': 'deploy'}}", "unproven")))
    TrustStore(tmp_path).record(
        AccessProof("203.0.113.7", 22, "deploy", key.fingerprint, "SHA256:x", 0.0)
    )
    preflight(load(write(tmp_path, f"{{{base}, {trust}, 'ssh_user': 'deploy'}}", "proven")))


def test_preflight_refuses_a_key_the_hardened_sshd_or_the_proof_would_not_accept(
    tmp_path: Path,
) -> None:
    proved, _ = ensure_key(tmp_path / "proved")
    other, _ = ensure_key(tmp_path / "other")
    TrustStore(tmp_path).record(
        AccessProof("203.0.113.7", 22, "deploy", proved.fingerprint, "SHA256:x", 0.0)
    )
    (tmp_path / "known_hosts").write_text("")
    rsa = tmp_path / "rsa2048"
    paramiko.RSAKey.generate(2048).write_private_key_file(str(rsa))
    rsa.chmod(0o600)
    trust = f"'ssh_known_hosts_file': '{tmp_path / 'known_hosts'}', 'ssh_user': 'deploy'"
    base = f"'ssh_hostname': '203.0.113.7', {trust}"
    with pytest.raises(ConfigError, match="is not the key bootstrap proved for deploy"):
        preflight(load(write(tmp_path, f"{{{base}, 'ssh_key': '{other.path}'}}", "other")))
    with pytest.raises(ConfigError, match=r"2048-bit RSA key.*use an ed25519 key"):
        preflight(load(write(tmp_path, f"{{{base}, 'ssh_key': '{rsa}'}}", "rsa")))


def _host(bulwark: dict[str, object]) -> InventoryHost:
    return from_data("web1", {"ssh_user": "deploy", "bulwark": bulwark})


@pytest.mark.parametrize(
    ("bulwark", "client", "groups", "refusal"),
    [
        ({}, "198.51.100.4", ["deploy"], None),
        ({"firewall": {"ssh_sources": ["10.0.0.0/8"]}}, "10.1.2.3", ["deploy"], None),
        ({"firewall": {"ssh_sources": ["10.0.0.0/8"]}}, "198.51.100.4", ["deploy"],
         r"ssh_sources \['10.0.0.0/8'\] excludes 198.51.100.4, the address this run"),
        ({"ssh": {"allow_groups": ["ops"]}}, "198.51.100.4", ["deploy", "ops"], None),
        ({"ssh": {"allow_groups": ["ops"]}}, "198.51.100.4", ["deploy", "sudo"],
         r"allow_groups \['ops'\] excludes deploy \(member of deploy sudo\)"),
    ],
)  # fmt: skip
def test_settings_that_would_shut_out_this_runs_login_are_refused(
    bulwark: dict[str, object], client: str, groups: list[str], refusal: str | None
) -> None:
    found = login_refusal(_host(bulwark), client, groups)
    if refusal is None:
        assert found is None
    else:
        assert found is not None
        assert re.search(refusal, found)


def test_the_documented_inventory_is_one_bulwark_accepts() -> None:
    """docs/hosts.md's example inventory, NAT host included, as harden and verify read it."""
    page = (Path(__file__).parents[2] / "docs" / "hosts.md").read_text()
    (code,) = re.findall(r"An inventory \(`hosts/prod.py`\):\n\n```python\n(.*?)```", page, re.S)
    namespace: dict[str, object] = {}
    exec(compile(code, "docs/hosts.md", "exec"), namespace)  # noqa: S102 - our own docs
    hosts = {name: from_data(name, dict(data)) for name, data in namespace["web"]}  # type: ignore[attr-defined]
    nat = hosts["203.0.113.20"]
    assert nat.sshd_port == 22  # the port inside the host, which sshd and the firewall name
    assert nat.reach(22).port == 2201
    assert nat.reach(8080).port == 2280
    assert hosts["web1.example.com"].settings.firewall.ssh_sources
