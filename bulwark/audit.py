"""`bulwark audit`: the rules over a stack's mock run, waivers and per-stack enforcement from
policies/, hosts' verification results merged in; offline (no credentials, no Pulumi CLI)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bulwark.errors import ConfigError
from bulwark.policy.evaluate import (
    Audit,
    Section,
    evaluate_stack,
    host_sections,
    read_host_results,
    read_policy_config,
)
from bulwark.policy.rules import RULES, Resource
from bulwark.policy.waivers import check_waivers, load_waivers
from bulwark.settings.cloud import stack_file
from bulwark.settings.load import key_lines, repo_relative
from bulwark.verify.results import Report as VerifyReport

POLICIES_DIR = Path("policies")


def config_path(policies_dir: Path, stack: str) -> Path:
    """The stack's CrossGuard policy config (`--policy-pack-config`), shared with the audit."""
    return policies_dir / "config" / f"{stack}.json"


def known_stacks(stacks_dir: Path) -> list[str]:
    return sorted(
        p.name.removeprefix("Pulumi.").removesuffix(".yaml")
        for p in stacks_dir.glob("Pulumi.*.yaml")
    )


def stack_section(
    stack: str,
    *,
    stacks_dir: Path = Path("stacks"),
    policies_dir: Path = POLICIES_DIR,
    today: dt.date | None = None,
) -> tuple[Section, list[str]]:
    """One stack's section, and notes (waivers no longer needed)."""
    from bulwark.cloud.plan import run_plan  # noqa: PLC0415 - Pulumi loads only when auditing

    if not policies_dir.is_dir():
        raise ConfigError(
            f"--policies-dir {policies_dir} is not a folder: pass the one holding waivers.yaml "
            "and config/<stack>.json (the repository's policies/)"
        )
    waivers = load_waivers(policies_dir / "waivers.yaml", today)
    plan = run_plan(stack, stacks_dir)
    resources = [Resource(r.type, r.name, r.urn, r.inputs) for r in plan.resources]
    mine = check_waivers(
        waivers,
        rule_ids=RULES.ids(),
        stacks=known_stacks(stacks_dir),
        stack=stack,
        resources=[(r.name, r.urn) for r in resources],
        path=policies_dir / "waivers.yaml",
    )
    # Every budget input is stamped on the resources: the pack config holds levels only.
    config = read_policy_config(config_path(policies_dir, stack))
    section = evaluate_stack(stack, resources, config=config, waivers=mine, today=today)
    path = stack_file(stack, stacks_dir)
    section = replace(
        section,
        source=repo_relative(path),
        lines=tuple(key_lines(path, "config").items()),
    )
    used = {
        (o.waiver.rule, o.waiver.resource)
        for c in section.controls
        for o in c.resources
        if o.waiver is not None
    }
    notes = [
        f"waiver {w.rule} on {w.resource} (stack {stack}, owner {w.owner}) waives nothing: the "
        "control passes; remove it from policies/waivers.yaml"
        for w in mine
        if (w.rule, w.resource) not in used
    ]
    return section, notes


def run_audit(
    stacks: Sequence[str],
    hosts: Sequence[Path] = (),
    *,
    host_reports: Sequence[VerifyReport] = (),
    stacks_dir: Path = Path("stacks"),
    policies_dir: Path = POLICIES_DIR,
    today: dt.date | None = None,
) -> Audit:
    """Audit stacks and hosts into one report; bad input raises ConfigError before any output."""
    # Read first: a bad results file is an error before any stack is run.
    reports: list[tuple[VerifyReport, str | None]] = [(r, None) for r in host_reports]
    reports += [(read_host_results(path), repo_relative(path)) for path in hosts]
    sections: list[Section] = []
    notes: list[str] = []
    for stack in stacks:
        section, stack_notes = stack_section(
            stack, stacks_dir=stacks_dir, policies_dir=policies_dir, today=today
        )
        sections.append(section)
        notes.extend(stack_notes)
    for report, source in reports:
        sections.extend(host_sections(report, source))
    return Audit(tuple(sections), notes=tuple(notes))
