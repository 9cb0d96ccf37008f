"""`bulwark plan`: the tree, the JSON the policy audit reads, and one-line refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bulwark.cli import app
from tests.lines import said

from .conftest import STACKS_DIR
from .test_stacks import MOCK_SECRETS

runner = CliRunner()


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_plan_shows_the_tree_outputs_and_budget(stack: str) -> None:
    result = runner.invoke(app, ["plan", "--stack", stack, "--stacks-dir", str(STACKS_DIR)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"stack {stack}: project acme-bulwark-{stack}" in out
    for component in ("ProjectApis", "PostgresDatabase", "TransactionPooler", "RedisCache",
                      "CloudRunService", "GithubDeployer"):  # fmt: skip
        assert component in out
    assert "sslMode = ENCRYPTED_ONLY" in out
    assert "ipv4Enabled = false" in out
    assert "[secret]" in out
    assert "fits" in out
    for value in MOCK_SECRETS:
        assert value not in out


def test_plan_json_is_what_the_policy_audit_reads() -> None:
    result = runner.invoke(
        app, ["plan", "-s", "staging", "--stacks-dir", str(STACKS_DIR), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stack"] == "staging"
    assert data["outputs"]["database_url"] == "[secret]"
    assert data["secret_outputs"] == ["database_url"]
    assert data["budget"]["fits"] is True
    sql = [r for r in data["resources"] if r["type"] == "gcp:sql/databaseInstance:DatabaseInstance"]
    (instance,) = sql
    assert instance["inputs"]["settings"]["ipConfiguration"]["ipv4Enabled"] is False
    assert instance["parent"].endswith("bulwark:database:PostgresDatabase::database")
    assert isinstance(instance["inputs"]["settings"]["diskSize"], int)  # not protobuf's float
    for value in MOCK_SECRETS:
        assert value not in result.output


def test_plan_refuses_bad_config_with_one_red_line(tmp_path: Path) -> None:
    shutil.copy(STACKS_DIR / "Pulumi.dev.yaml", tmp_path)
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("mode: pgbouncer", "mode: odyssey"))
    result = runner.invoke(app, ["plan", "--stack", "dev", "--stacks-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert len(said(result.output)) == 1, result.output
    assert "error:" in result.output
    assert "bulwark:pooler.mode: use 'managed' or 'pgbouncer'" in result.output


def test_plan_of_a_missing_stack_names_the_file() -> None:
    result = runner.invoke(app, ["plan", "--stack", "qa", "--stacks-dir", str(STACKS_DIR)])
    assert result.exit_code == 2
    assert "Pulumi.qa.yaml: no such stack file" in result.output


def test_plan_of_several_stacks_validates_all_before_printing(tmp_path: Path) -> None:
    for stack in ("dev", "prod"):
        shutil.copy(STACKS_DIR / f"Pulumi.{stack}.yaml", tmp_path)
    both = ["plan", "-s", "dev", "-s", "prod", "--stacks-dir", str(tmp_path), "--json"]
    result = runner.invoke(app, both)
    assert result.exit_code == 0, result.output
    assert [p["stack"] for p in json.loads(result.stdout)] == ["dev", "prod"]

    prod = tmp_path / "Pulumi.prod.yaml"
    prod.write_text(prod.read_text().replace("max_instances: 40", "max_instances: 0"))
    result = runner.invoke(app, both)
    assert result.exit_code == 2
    assert len(said(result.output)) == 1, "nothing of dev may be printed"
    assert "bulwark:service.max_instances: 0 would stop the service" in result.output
