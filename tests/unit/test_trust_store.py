"""The trust store (pinned host keys, access proofs) is the same one from any folder: the
project's hosts/ found from Pulumi.yaml upwards, BULWARK_TRUST_DIR when set, bulwark's user data
folder outside a project; an inventory's relative key and known_hosts mean its project's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulwark.dirs import project_root, trust_dir
from bulwark.hosts import inventory
from bulwark.hosts.keys import ensure_key


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "platform"
    (root / "hosts").mkdir(parents=True)
    (root / "deep" / "er").mkdir(parents=True)
    (root / "Pulumi.yaml").write_text("name: bulwark\nruntime: python\n")
    monkeypatch.delenv("BULWARK_TRUST_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home" / ".local" / "share"))
    return root


@pytest.mark.parametrize("where", [".", "hosts", "deep/er"])
def test_every_folder_of_the_project_finds_its_hosts_folder(
    project: Path, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project / where)
    assert project_root() == project.resolve()
    assert trust_dir() == project.resolve() / "hosts"


def test_a_folder_named_hosts_outside_a_project_is_not_the_store(
    tmp_path: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "hosts").mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    assert trust_dir() == tmp_path / "home" / ".local" / "share" / "bulwark" / "hosts"


def test_bulwark_trust_dir_wins(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project / "deep")
    monkeypatch.setenv("BULWARK_TRUST_DIR", "~/trust")
    assert trust_dir() == Path.home() / "trust"


def test_relative_paths_in_an_inventory_mean_its_projects_files(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_key(project / "keys" / "operator")
    (project / "hosts" / "known_hosts").write_text("")
    (project / "hosts" / "prod.py").write_text(
        "web = [('web1', {'ssh_hostname': '203.0.113.9', 'ssh_user': 'deploy', "
        "'ssh_key': 'keys/operator', 'ssh_known_hosts_file': 'hosts/known_hosts'})]\n"
    )
    monkeypatch.chdir(tmp_path)  # run from outside the project
    (host,) = inventory.load(project / "hosts" / "prod.py")
    assert host.key_file == project / "keys" / "operator"
    assert host.known_hosts == project / "hosts" / "known_hosts"
    assert inventory.project_of(project / "hosts" / "prod.py") == project.resolve()
