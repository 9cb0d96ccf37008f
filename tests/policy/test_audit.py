"""The offline audit: the three stacks pass (prod with no waivers), a weakened stack fails with
the right ids, waivers show as waived or fail when expired, bad input is one line and exit 2,
hosts merge in, and every format has its shape and no secret."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from bulwark.audit import config_path, run_audit
from bulwark.cli import app
from bulwark.cloud.plan import Plan, run_plan
from bulwark.errors import ConfigError
from bulwark.policy.evaluate import enforcement_levels, evaluate_stack, read_policy_config
from bulwark.policy.report import FORMATS, render
from bulwark.policy.rules import RULES, Resource
from bulwark.policy.rules import types as t
from bulwark.policy.rules.stack import stack_budget
from bulwark.policy.rules.values import unwrap
from bulwark.policy.waivers import load_waivers
from bulwark.pooling.keys import POOL_ENV, RESERVED_LABEL, SURGE_LABEL, WORKERS_ENV
from bulwark.verify.results import ControlResult, HostResult, Report
from tests.cloud.test_stacks import MOCK_SECRETS
from tests.lines import said

from .conftest import POLICIES_DIR, STACKS_DIR, as_resources

runner = CliRunner()
TODAY = dt.date(2026, 11, 22)


def _policies(tmp_path: Path, waivers: list[dict[str, Any]]) -> Path:
    shutil.copytree(POLICIES_DIR / "config", tmp_path / "config")
    (tmp_path / "waivers.yaml").write_text(yaml.safe_dump({"waivers": waivers}))
    return tmp_path


def _cli(*args: str) -> Any:
    return runner.invoke(app, [*args, "--stacks-dir", str(STACKS_DIR)])


def test_all_three_stacks_pass_and_prod_has_no_waivers() -> None:
    result = _cli("audit", "-s", "dev", "-s", "staging", "-s", "prod",
                  "--policies-dir", str(POLICIES_DIR))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output
    assert not [w for w in load_waivers(POLICIES_DIR / "waivers.yaml") if w.stack == "prod"]


def _weakened(plan: Plan) -> list[Resource]:
    """prod with a public database, TLS optional, a public invoker and pools too big.

    The settings model refuses all four at config time (the component hard-codes private IP
    and ENCRYPTED_ONLY, allUsers needs allow_public_invoker, and a budget that does not fit
    stops the program), so the properties are changed here, as a hand-edited program or
    another tool's resources would arrive at CrossGuard."""
    resources = []
    for res in as_resources(plan):
        props = unwrap(res.props)
        if res.type == t.SQL_INSTANCE:
            ip = props["settings"]["ipConfiguration"]
            ip["ipv4Enabled"] = True
            ip["sslMode"] = "ALLOW_UNENCRYPTED_AND_ENCRYPTED"
            for flag in props["settings"]["connectionPoolConfigs"][0]["flags"]:
                if flag["name"] == "max_pool_size":
                    flag["value"] = "600"  # 2 poolers x 600 > 790 usable
        if res.type == t.RUN_IAM_MEMBER:
            props["member"] = "allUsers"
        resources.append(Resource(res.type, res.name, res.urn, props))
    return resources


def test_a_weakened_stack_fails_with_those_rule_ids(prod_plan: Plan) -> None:
    section = evaluate_stack("prod", _weakened(prod_plan), today=TODAY)
    failed = {c.id for c in section.controls if c.status == "fail"}
    assert {"sql-no-public-ip", "sql-tls-required", "run-no-public-invoker",
            "connection-budget-fits", "iam-no-public-members"} == failed  # fmt: skip
    assert not section.ok


def test_a_public_invoker_set_through_config_fails_the_audit(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    text = (STACKS_DIR / "Pulumi.staging.yaml").read_text()
    text = text.replace(
        "    invokers:\n", "    allow_public_invoker: true\n    invokers:\n      - allUsers\n"
    )
    (stacks / "Pulumi.staging.yaml").write_text(text)
    result = runner.invoke(app, ["audit", "-s", "staging", "--stacks-dir", str(stacks),
                                 "--policies-dir", str(POLICIES_DIR)])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "run-no-public-invoker" in result.output
    assert "fix: Grant roles/run.invoker to named members" in result.output


def _waiver(**over: Any) -> dict[str, Any]:
    return {"rule": "sql-ha-in-prod", "stack": "staging", "resource": "database-instance",
            "owner": "platform@acme.example", "reason": "Zonal while the region is migrated.",
            "expires": "2026-12-31", **over}  # fmt: skip


def test_waived_failure_shows_as_waived_and_an_expired_one_fails(
    tmp_path: Path, prod_plan: Plan
) -> None:
    from bulwark.policy.waivers import Waiver  # noqa: PLC0415

    resources = [
        Resource(r.type, r.name, r.urn,
                 {**unwrap(r.props), "settings": {**unwrap(r.props["settings"]),
                                                  "availabilityType": "ZONAL"}})
        if r.type == t.SQL_INSTANCE else r
        for r in as_resources(prod_plan)
    ]  # fmt: skip
    waiver = Waiver.model_validate(_waiver(stack="prod"))
    section = evaluate_stack("prod", resources, waivers=[waiver], today=TODAY)
    (ha,) = [c for c in section.controls if c.id == "sql-ha-in-prod"]
    assert ha.status == "waived"
    assert ha.resources[0].waiver == waiver
    assert section.ok
    text = render(run_audit_like(section), "text")
    assert "waiver on database-instance: platform@acme.example, until 2026-12-31" in text

    late = evaluate_stack("prod", resources, waivers=[waiver], today=dt.date(2027, 1, 1))
    (ha,) = [c for c in late.controls if c.id == "sql-ha-in-prod"]
    assert ha.status == "fail"
    assert any("expired on 2026-12-31" in e for e in ha.evidence)
    assert not late.ok


def run_audit_like(section: Any) -> Any:
    from bulwark.policy.evaluate import Audit  # noqa: PLC0415

    return Audit((section,))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"rule": "sql-no-such-rule"}, "waivers[0].rule: 'sql-no-such-rule' is not a bulwark rule"),
        ({"resource": "nonexistent"}, "waivers[0].resource: 'nonexistent' is not a resource"),
        ({"stack": "qa"}, "waivers[0].stack: 'qa' has no stacks/Pulumi.qa.yaml"),
        ({"expires": "soon"}, "waivers[0].expires: not a date: use YYYY-MM-DD"),
        ({"owner": None}, "waivers[0].owner:"),
        ({"color": "red"}, "waivers[0].color: unknown field"),
        ({"stack": "prod"}, "waivers[0].stack: prod takes no waivers: fix database-instance"),
        ({"expires": "2099-01-01"}, "waivers[0].expires: 2099-01-01 is more than a quarter away"),
    ],
)  # fmt: skip
def test_a_bad_waiver_is_one_line_and_exit_2(
    tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    waiver = {k: v for k, v in _waiver(**change).items() if v is not None}
    policies = _policies(tmp_path, [waiver])
    result = _cli("audit", "-s", "staging", "--policies-dir", str(policies))
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert len(said(result.output)) == 1, result.output


def test_an_unneeded_waiver_is_a_note(tmp_path: Path) -> None:
    policies = _policies(tmp_path, [_waiver()])
    audit = run_audit(["staging"], stacks_dir=STACKS_DIR, policies_dir=policies, today=TODAY)
    assert audit.ok
    assert any("waives nothing" in n for n in audit.notes)


def _host_report(tmp_path: Path, status: str = "fail") -> Path:
    report = Report(hosts=[HostResult(host="web-1", controls=[
        ControlResult(id="ssh-permit-root-login", title="root cannot log in over SSH",
                      family="ssh", status="pass", rationale="r",
                      references={"cis": "5.1.20", "devsec": ["sshd-07"]}),
        ControlResult(id="fw-default-deny", title="firewall denies by default", family="fw",
                      status=status, rationale="r", references={"cis": "4.2.5"},  # type: ignore[arg-type]
                      evidence="Default: allow (incoming)"),
    ])])  # fmt: skip
    path = tmp_path / "verify.json"
    report.write(path)
    return path


def test_hosts_merge_in_and_a_failing_host_fails_the_audit(tmp_path: Path) -> None:
    path = _host_report(tmp_path)
    result = _cli("audit", "-s", "dev", "--hosts", str(path), "--policies-dir", str(POLICIES_DIR))
    assert result.exit_code == 1, result.output
    assert "host web-1: 1 passed, 1 failed" in result.output
    assert "fw-default-deny" in result.output
    assert "Default: allow (incoming)" in result.output
    ok = _cli("audit", "--hosts", str(_host_report(tmp_path, "pass")), "-f", "json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["sections"][0]["name"] == "host web-1"


def test_a_bad_hosts_file_or_format_is_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    for args in (["--hosts", str(bad)], ["--hosts", str(tmp_path / "missing.json")],
                 ["-s", "dev", "--format", "pdf"], []):  # fmt: skip
        result = _cli("audit", *args)
        assert result.exit_code == 2, (args, result.output)
        assert said(result.output)[0].startswith("error: "), result.output


@pytest.fixture(scope="module")
def mixed_audit(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("mixed")
    plan = run_plan("dev", STACKS_DIR)
    from bulwark.policy.evaluate import Audit, host_sections  # noqa: PLC0415

    section = evaluate_stack("dev", as_resources(plan), today=TODAY)
    host = host_sections(Report.read(_host_report(tmp)))
    return Audit((section, *host))


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_has_summary_first_and_no_secret(mixed_audit: Any, fmt: str) -> None:
    text = render(mixed_audit, fmt)  # type: ignore[arg-type]
    for value in MOCK_SECRETS:
        assert value not in text
    if fmt in ("text", "md"):
        assert "FAIL: " in text.split("\n\n")[0] or "FAIL: " in text.splitlines()[2]


def test_json_report_shape(mixed_audit: Any) -> None:
    data = json.loads(render(mixed_audit, "json"))
    assert data["schema"] == "bulwark.audit/v1"
    assert data["ok"] is False
    assert [s["kind"] for s in data["sections"]] == ["cloud", "host"]
    control = data["sections"][0]["controls"][0]
    assert {"id", "status", "resources", "evidence", "references", "enforcement"} <= set(control)


def test_sarif_is_2_1_0_shaped(mixed_audit: Any, prod_plan: Plan) -> None:
    from bulwark.policy.evaluate import Audit  # noqa: PLC0415

    weak = Audit((evaluate_stack("prod", _weakened(prod_plan), today=TODAY),))
    sarif = json.loads(render(weak, "sarif"))
    assert sarif["version"] == "2.1.0"
    assert sarif["$schema"].endswith("sarif-2.1.0.json")
    (run,) = sarif["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert len(rules) == len(RULES)
    assert all({"id", "shortDescription", "fullDescription", "help"} <= set(r) for r in rules)
    assert run["results"]
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note")
        assert result["message"]["text"]
        assert result["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]


def test_html_report_reads_as_a_document(mixed_audit: Any) -> None:
    html = render(mixed_audit, "html")
    assert html.startswith("<!doctype html>")
    assert "<style>" in html  # self-contained: no external CSS
    assert "http" not in html.split("<body>")[0].replace("http-equiv", "")
    assert 'class="card fail"' in html
    assert "host web-1" in html
    assert html.index("passed</div>") < html.index('<section id="s1">')


def test_enforcement_levels_from_config() -> None:
    rules = list(RULES)
    config: dict[str, object] = {
        "all": "advisory",
        "sql-no-public-ip": "mandatory",
        "run-resource-limits": {"enforcementLevel": "disabled"},
    }
    levels = enforcement_levels(config, rules)
    assert levels["sql-no-public-ip"] == "mandatory"
    assert levels["sql-tls-required"] == "advisory"
    assert levels["run-resource-limits"] == "disabled"
    with pytest.raises(ConfigError, match="sql-no-such: not a bulwark rule"):
        enforcement_levels({"sql-no-such": "advisory"}, rules)
    with pytest.raises(ConfigError, match="enforcement level 'loud'"):
        enforcement_levels({"all": "loud"}, rules)


def test_advisory_failures_are_reported_but_do_not_fail(prod_plan: Plan) -> None:
    config = {"all": "advisory"}
    section = evaluate_stack("prod", _weakened(prod_plan), config=config, today=TODAY)
    assert section.ok
    assert {c.enforcement for c in section.controls if c.status == "fail"} == {"advisory"}
    disabled = evaluate_stack("prod", _weakened(prod_plan), config={"all": "disabled"})
    assert {c.status for c in disabled.controls} == {"not-applicable"}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_the_resources_state_every_budget_input_the_stack_assumes(stack: str) -> None:
    """Both runners read the budget from the resources alone; the stack stamps its settings."""
    plan = run_plan(stack, STACKS_DIR)
    service = plan.one("gcp:cloudrunv2/service:Service")
    sql = plan.one("gcp:sql/databaseInstance:DatabaseInstance")
    s = plan.settings
    assert service.get(f"labels.{SURGE_LABEL}") == str(s.service.rollout_surge_percent)
    assert sql.get(f"settings.userLabels.{RESERVED_LABEL}") == str(s.database.reserved_connections)
    envs = {e["name"]: e.get("value") for e in service.get("template.containers.0.envs")}
    assert envs[WORKERS_ENV] == str(s.service.workers_per_instance)
    assert envs[POOL_ENV] == str(s.service.db_pool_size)
    config = read_policy_config(config_path(POLICIES_DIR, stack))
    assert "rollout_surge_percent" not in json.dumps(config)  # no second copy to drift
    enforcement_levels(config, list(RULES))  # valid levels and ids
    resources = [Resource(r.type, r.name, r.urn, r.inputs) for r in plan.resources]
    budget = stack_budget(resources)
    assert not isinstance(budget, str)
    assert budget == s.budget


def test_all_audits_every_stack_file_in_one_report(tmp_path: Path) -> None:
    out = tmp_path / "audit.json"
    result = _cli("audit", "--all", "-f", "json", "-o", str(out), "--policies-dir",
                  str(POLICIES_DIR))  # fmt: skip
    assert result.exit_code == 0, result.output
    names = [s["name"] for s in json.loads(out.read_text())["sections"]]
    assert names == ["stack dev", "stack prod", "stack staging"]
