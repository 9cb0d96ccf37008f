"""Every command's JSON form has one schema (bulwark/schemas/), and the forms that need no host
match theirs here; the host commands' forms are checked in the lab tests that run them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import typer
from jsonschema import Draft202012Validator

from bulwark.cli import app, run
from tests.schemas import SCHEMAS, check, validator

REPO = Path(__file__).resolve().parents[2]


def json_commands() -> dict[str, Any]:
    """Every command that takes --json, by its path: "lab up" -> "lab-up"."""
    found: dict[str, Any] = {}

    def walk(command: Any, path: list[str]) -> None:
        if isinstance(sub_commands := getattr(command, "commands", None), dict):
            for name, sub in sub_commands.items():
                walk(sub, [*path, name])
        elif any("--json" in p.opts for p in command.params):
            found["-".join(path)] = command

    walk(typer.main.get_command(app), [])
    return found


def test_every_json_form_has_one_schema_and_every_schema_a_command() -> None:
    schemas = {p.stem for p in SCHEMAS.glob("*.json")}
    assert set(json_commands()) == schemas
    for name in schemas:
        validator(name)  # a valid Draft 2020-12 schema


def test_every_json_command_has_the_same_output_options() -> None:
    for name, command in json_commands().items():
        options = {o for p in command.params for o in p.opts}
        assert {"--format", "-f", "--json", "--out", "-o"} <= options, name


def json_of(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    code = run(list(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("plan", ("plan", "--stack", "dev", "--json")),
        ("plan", ("plan", "--stack", "prod", "--format", "json")),
        ("audit", ("audit", "--stack", "dev", "--json")),
        ("audit", ("audit", "--all", "--format", "json")),
        ("settings", ("settings", "--json")),
        ("settings", ("settings", "--cloud", "--json")),
        ("lab-list", ("lab", "list", "--json")),
        ("lab-down", ("lab", "down", "--all", "--json")),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v),
)
def test_the_json_form_matches_the_commands_schema(
    command: str,
    args: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("BULWARK_STATE_DIR", str(tmp_path / "state"))  # no lab VMs of ours
    monkeypatch.chdir(REPO)
    data = check(command, json_of(capsys, *args))
    if command == "settings":
        Draft202012Validator.check_schema(data)  # the settings' schema is itself a valid one


def test_out_writes_the_same_json_and_stdout_gets_the_verdict(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    target = tmp_path / "plan.json"
    assert run(["plan", "--stack", "dev", "--json", "--out", str(target)]) == 0
    out, _ = capsys.readouterr()
    assert len(out.splitlines()) == 1
    assert str(target) in out
    check("plan", target.read_text())


def test_a_schema_refuses_a_form_that_lost_a_field(capsys: pytest.CaptureFixture[str]) -> None:
    data = json_of(capsys, "audit", "--stack", "dev", "--json")
    broken = copy.deepcopy(data)
    assert isinstance(broken, dict)
    del broken["sections"][0]["controls"][0]["status"]
    with pytest.raises(AssertionError, match="'status' is a required property"):
        check("audit", broken)
