"""`bulwark demo` ends with the audit of stack dev and the demo host: the step, offline, with a
constructed verification report (the demo's VM is exercised by the lab tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bulwark import cli
from bulwark.cli import lab as lab_cli
from bulwark.demo import DemoResult, demo_audit
from bulwark.verify.results import ControlResult, HostResult, Report

from .conftest import STACKS_DIR


def _verify(status: str) -> Report:
    return Report(hosts=[HostResult(host="lab-bookworm", controls=[
        ControlResult(id="ssh-permit-root-login", title="root cannot log in over SSH",
                      family="ssh", status=status,  # type: ignore[arg-type]
                      rationale="r", references={"cis": "5.1.20", "devsec": ["sshd-07"]},
                      evidence=None if status == "pass" else "permitrootlogin yes"),
    ])])  # fmt: skip


def test_demo_audit_merges_stack_dev_and_the_host(tmp_path: Path) -> None:
    audit, html = demo_audit(_verify("pass"), tmp_path, STACKS_DIR)
    assert [s.name for s in audit.sections] == ["stack dev", "host lab-bookworm"]
    assert audit.ok
    assert html == tmp_path / "audit.html"
    assert "host lab-bookworm" in html.read_text()
    failing, _ = demo_audit(_verify("fail"), tmp_path, STACKS_DIR)
    assert not failing.ok


def test_demo_command_ends_with_the_audit_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit, html = demo_audit(_verify("pass"), tmp_path, STACKS_DIR)

    class Fake:
        """What run_demo returns, minus the VM (only what the printer reads)."""

        def as_dict(self) -> dict[str, object]:
            return {}

    def fake_run_demo(*_args: object, **_kwargs: object) -> object:
        result = Fake()
        bootstrap = type("B", (), {"changes": [], "as_dict": lambda self: {}})()
        for key, value in {
            "vm": type("V", (), {"name": "lab-1", "distro": "bookworm"})(),
            "first": bootstrap, "second": bootstrap, "host_key_confirmed": True,
            "harden": type("H", (), {"changed": 3, "as_dict": lambda self: {}})(),
            "root_login_refused": True,
            "verify": _verify("pass"), "audit": audit, "audit_html": html,
            "operator_key": tmp_path / "key",
        }.items():  # fmt: skip
            setattr(result, key, value)
        return result

    monkeypatch.setattr("bulwark.demo.run_demo", fake_run_demo)  # cli imports it lazily
    monkeypatch.setattr(lab_cli, "print_bootstrap", lambda _console, _report: None)
    result = CliRunner().invoke(cli.app, ["demo"])
    assert result.exit_code == 0, result.output
    tail = result.output.strip().splitlines()
    assert tail[-4].startswith("audit: PASS")
    assert "stack dev:" in tail[-3]
    assert "host lab-bookworm: 1 passed" in tail[-2]
    assert tail[-1] == f"audit report: {html}"
    assert DemoResult.__dataclass_fields__["audit"]
