"""The lab and bootstrap as an operator drives them: `bulwark lab up/list/ssh/down`, `bootstrap`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bulwark.lab import vm as lab


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
    vm = json.loads(up.stdout)
    try:
        assert vm["distro"] == "trixie"
        assert set(vm["forwards"]) == {"8080"}
        listed = json.loads(bulwark("lab", "list", "--json").stdout)
        assert vm["name"] in [v["name"] for v in listed]

        os_release = bulwark("lab", "ssh", vm["name"], "cat", "/etc/os-release")
        assert os_release.returncode == 0, os_release.stderr
        assert "trixie" in os_release.stdout

        password = Path(vm["root_password_file"]).read_text().strip()
        args = [
            "bootstrap", "127.0.0.1", "--port", str(vm["ssh"]["port"]),
            "--password-env", "LAB_ROOT_PASSWORD",
            "--deploy-key", str(tmp_path / "operator"),
            "--trust-dir", str(tmp_path / "trust"), "--json",
        ]  # fmt: skip
        first = bulwark(*args, env={"LAB_ROOT_PASSWORD": password})
        assert first.returncode == 0, first.stderr
        report = json.loads(first.stdout)
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
        down = bulwark("lab", "down", vm["name"])
    assert down.returncode == 0, down.stderr
    assert vm["name"] not in [v.name for v in lab.running()]
    assert not Path(vm["directory"]).exists()


def test_demo_boots_bootstraps_hardens_and_verifies_a_fresh_vps() -> None:
    # A whole fresh VPS on TCG: boot, bootstrap, first harden (~10 min alone), re-run, verify.
    result = bulwark("demo", "--json", timeout=2400)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["bootstrap"]["proof"]["user"] == "deploy"
    assert data["rerun"]["changes"] == []
    assert data["host_key_confirmed"] is True
    assert data["harden"]["changed"] > 0
    assert data["root_login_refused"] is True
    (host,) = data["verify"]["hosts"]
    assert host["summary"]["fail"] == 0, [c for c in host["controls"] if c["status"] != "pass"]
    assert host["summary"]["error"] == 0
    assert host["summary"]["pass"] >= 100
    assert data["vm"]["name"] not in [v.name for v in lab.running()]
