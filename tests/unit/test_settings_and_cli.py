"""Input validation and the CLI's contract: one-line errors, exit codes, nothing applied."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bulwark.cli import app
from bulwark.errors import ConfigError, LabError
from bulwark.hosts.bootstrap import TrustStore, require_proof
from bulwark.hosts.ssh import Target
from bulwark.lab.image import Recipe
from bulwark.lab.vm import VMSpec
from bulwark.settings.docs import settings_table
from bulwark.settings.hosts import DeployUser, deploy_user
from tests.lines import said

runner = CliRunner()


@pytest.mark.parametrize("name", ["Deploy", "1ops", "root", "a" * 33, "de ploy", "x;rm"])
def test_invalid_deploy_user_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=r"^deploy_user\.name: "):
        deploy_user(name)


def test_deploy_user_defaults_are_declared_once() -> None:
    user = DeployUser()
    assert user.name == "deploy"
    assert user.key_path == Path("~/.ssh/bulwark_ed25519").expanduser()


def test_require_proof_refuses_an_unproven_host(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"run `bulwark bootstrap 10\.0\.0\.5 --port 22` first"):
        require_proof(TrustStore(tmp_path), Target("10.0.0.5"), "deploy")


def test_lab_specs_are_validated() -> None:
    with pytest.raises(LabError, match="unknown lab distro 'sid'"):
        Recipe(distro="sid")
    with pytest.raises(LabError, match="name 'Bad_Name' is invalid"):
        VMSpec(name="Bad_Name")
    with pytest.raises(LabError, match="forwarded port 70000"):
        VMSpec(forwards=(70000,))


def test_recipe_digest_changes_with_the_recipe() -> None:
    base = Recipe()
    assert base.digest == Recipe().digest
    assert base.digest != Recipe(packages=(*base.packages, "vim")).digest
    assert base.digest != Recipe(distro="trixie").digest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bootstrap", "h", "--deploy-user", "Root", "--password-env", "HOME"], "deploy_user.name"),
        (["bootstrap", "h", "--port", "0", "--password-env", "HOME"], "--port: 0 is not a port"),
        (["bootstrap", "h"], "no first-contact credential"),
        (["bootstrap", "h", "--password-env", "BULWARK_UNSET_VAR"], "that variable is not set"),
        (
            ["bootstrap", "h", "--key", "/nonexistent/key"],
            "key file /nonexistent/key does not exist",
        ),
        (["lab", "down"], "name the VMs to stop, or pass --all"),
        (["lab", "up", "--distro", "sid"], "unknown lab distro 'sid'"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    result = runner.invoke(app, [*args], env={"BULWARK_STATE_DIR": str(tmp_path)})
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(said(result.output)) == 1, result.output
    assert not (tmp_path / "lab").exists()


def test_bootstrap_to_this_machine_is_refused_before_anything_happens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        monkeypatch.setenv("FIRST_PW", "irrelevant")
        result = runner.invoke(
            app,
            [
                "bootstrap", "127.0.0.1", "--port", str(port), "--password-env", "FIRST_PW",
                "--deploy-key", str(tmp_path / "op"), "--trust-dir", str(tmp_path / "trust"),
            ],
        )  # fmt: skip
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            s.accept()  # nothing connected
    assert result.exit_code == 2
    assert f"127.0.0.1:{port} resolves to 127.0.0.1, this machine, not a lab VM" in result.output
    assert "irrelevant" not in result.output
    assert not (tmp_path / "op").exists(), "the operator key was created for a refused host"
    assert not (tmp_path / "trust").exists()


def test_readme_settings_table_is_generated_from_the_declarations() -> None:
    page = (Path(__file__).parents[2] / "docs" / "hosts.md").read_text()
    assert settings_table() in page, (
        "docs/hosts.md is stale: paste the output of `bulwark settings`"
    )


def test_the_cli_loads_no_ssh_pyinfra_or_pulumi_code_until_a_command_needs_it() -> None:
    """`bulwark --help` and the cloud commands start fast: host code (paramiko, pyinfra) and
    Pulumi load inside the commands that use them."""
    code = (
        "import sys, bulwark.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'paramiko', 'pyinfra', 'pyinfra_cli', 'testinfra', 'pulumi', 'pulumi_gcp', "
        "'psycopg', 'cryptography', 'psutil'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_readme_fits_on_a_screen_and_its_links_resolve() -> None:
    """The README is the map (under 12 KB); the detail is in docs/, and every link lands."""
    import re  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    root = Path(__file__).parents[2]
    readme = (root / "README.md").read_text()
    assert len(readme.encode()) < 12 * 1024
    for page in ["README.md", *(str(p.relative_to(root)) for p in (root / "docs").glob("*.md"))]:
        text = (root / page).read_text()
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", text):
            assert (root / page).parent.joinpath(target).exists(), f"{page} links to {target}"


def test_version_names_bulwark_and_its_engines_without_importing_them() -> None:
    code = (
        "import sys; from bulwark.cli import run; rc = run(['--version']); "
        "print(sorted(m for m in ('pulumi', 'pulumi_gcp', 'pyinfra', 'testinfra', 'paramiko') "
        "if m in sys.modules)); sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("bulwark ")
    names = {line.split()[0] for line in lines[1:-1]}
    assert {"pulumi", "pulumi-gcp", "pyinfra", "pytest-testinfra"} <= names
    assert all(line.split()[1][0].isdigit() for line in lines[1:-1])
    assert lines[-1] == "[]"  # read from package metadata: no engine was imported


def test_output_to_a_pipe_is_never_wrapped() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bulwark", "plan", "--stack", "prod"],
        capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "40"},
    )  # fmt: skip
    member = "serviceAccount:bulwark-prod-run@acme-bulwark-prod.iam.gserviceaccount.com"
    assert any(member in line for line in done.stdout.splitlines())
    assert max(len(line) for line in done.stdout.splitlines()) > 120
