"""Run the rules over a stack's resources (pure: no Pulumi), apply waivers and enforcement,
and merge hosts' verification results into one audit.

Statuses: `pass`, `fail`, `waived` (failed, accepted by an unexpired waiver),
`not-applicable` (with the reason), and `error` (a host control that could not run). The audit
fails when a mandatory control fails or a host control fails or errs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from bulwark.errors import ConfigError
from bulwark.policy.rules import RULES, NotApplicable, Resource, Rule
from bulwark.policy.waivers import Waiver
from bulwark.settings.load import first_error, read_json
from bulwark.verify.results import SCHEMA as VERIFY_SCHEMA
from bulwark.verify.results import Report as VerifyReport

Status = Literal["pass", "fail", "waived", "not-applicable", "error"]
STATUSES: tuple[Status, ...] = ("fail", "error", "waived", "pass", "not-applicable")
Enforcement = Literal["mandatory", "advisory", "disabled"]
LEVELS: tuple[Enforcement, ...] = ("mandatory", "advisory", "disabled")
SCHEMA = "bulwark.audit/v1"


@dataclass(frozen=True)
class ResourceOutcome:
    """One rule on one resource (or on the stack: name `stack`)."""

    name: str
    urn: str | None
    type: str
    status: Status
    messages: tuple[str, ...] = ()
    waiver: Waiver | None = None
    waiver_expired: bool = False
    reason: str | None = None

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "name": self.name,
            "urn": self.urn,
            "type": self.type,
            "status": self.status,
            "messages": list(self.messages),
        }
        if self.waiver is not None:
            data["waiver"] = {**self.waiver.as_dict(), "expired": self.waiver_expired}
        if self.reason:
            data["reason"] = self.reason
        return data


@dataclass(frozen=True)
class Control:
    """One control in one section, with its aggregated status and every resource's outcome."""

    id: str
    title: str
    family: str
    severity: str
    enforcement: Enforcement
    status: Status
    rationale: str
    remediation: str
    references: dict[str, str]
    resources: tuple[ResourceOutcome, ...] = ()
    evidence: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def failing(self) -> bool:
        """Whether this control makes the audit fail (advisory failures are reported only)."""
        return self.status == "error" or (self.status == "fail" and self.enforcement == "mandatory")

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "title": self.title,
            "family": self.family,
            "severity": self.severity,
            "enforcement": self.enforcement,
            "status": self.status,
            "rationale": self.rationale,
            "remediation": self.remediation,
            "references": self.references,
            "resources": [r.as_dict() for r in self.resources],
            "evidence": list(self.evidence),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Section:
    """The controls of one stack (`kind` cloud) or one host (`kind` host)."""

    name: str
    kind: Literal["cloud", "host"]
    controls: tuple[Control, ...]
    # The file behind the section, relative to the repository (the stack file, the inventory or
    # the results file), and the line of each setting in it: where code scanning points.
    source: str | None = None
    lines: tuple[tuple[str, int], ...] = ()

    def line_of(self, key: str) -> int | None:
        return dict(self.lines).get(key)

    @property
    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for control in self.controls:
            counts[control.status] += 1
        return counts

    @property
    def ok(self) -> bool:
        return not any(c.failing for c in self.controls)


@dataclass(frozen=True)
class Audit:
    sections: tuple[Section, ...]
    generated_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    notes: tuple[str, ...] = ()

    @property
    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for section in self.sections:
            for status, n in section.summary.items():
                counts[status] += n
        counts["advisory"] = sum(
            1 for s in self.sections for c in s.controls if c.status == "fail" and not c.failing
        )
        return counts

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.sections)

    @property
    def failing(self) -> list[tuple[Section, Control]]:
        return [(s, c) for s in self.sections for c in s.controls if c.failing]

    def as_dict(self) -> dict[str, object]:
        return {
            "schema": SCHEMA,
            "tool": "bulwark audit",
            "generated_at": self.generated_at,
            "ok": self.ok,
            "summary": self.summary,
            "notes": list(self.notes),
            "sections": [
                {
                    "name": s.name,
                    "kind": s.kind,
                    "ok": s.ok,
                    "summary": s.summary,
                    "controls": [c.as_dict() for c in s.controls],
                }
                for s in self.sections
            ],
        }


# ----------------------------------------------------------------------------- enforcement


def enforcement_levels(
    config: Mapping[str, object], rules: Sequence[Rule], where: str = "policy config"
) -> dict[str, Enforcement]:
    """Each rule's level: the rule's default, then `all`, then the rule's own entry.

    The config has CrossGuard's `--policy-pack-config` shape: `{"all": "advisory",
    "rule-id": "disabled" | {"enforcementLevel": "...", ...}}`.
    """
    ids = {r.id for r in rules}
    for key in config:
        if key != "all" and key not in ids:
            raise ConfigError(
                f"{where}: {key}: not a bulwark rule: remove it or use an id from "
                "`bulwark audit --list-rules`"
            )
    levels: dict[str, Enforcement] = {}
    for rule in rules:
        level: object = rule.default_enforcement
        for key in ("all", rule.id):
            entry = config.get(key)
            if isinstance(entry, Mapping):
                entry = entry.get("enforcementLevel", level)
            if entry is not None:
                level = entry
        if level not in LEVELS:
            raise ConfigError(
                f"{where}: {rule.id}: enforcement level {level!r} is not one of "
                f"{', '.join(LEVELS)}: fix it"
            )
        levels[rule.id] = level
    return levels


def rule_config(config: Mapping[str, object], rule_id: str) -> dict[str, object]:
    entry = config.get(rule_id)
    if isinstance(entry, Mapping):
        return {str(k): v for k, v in entry.items() if k != "enforcementLevel"}
    return {}


def read_policy_config(path: Path) -> dict[str, object]:
    """A CrossGuard policy config file (JSON), or {} when the stack has none."""
    if not path.exists():
        return {}
    data = read_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f'{path}: not a JSON object: use {{"rule-id": "advisory"}}')
    return data


# ----------------------------------------------------------------------------- cloud


def _apply_waiver(
    rule: Rule,
    res_name: str,
    urn: str | None,
    messages: Sequence[str],
    waivers: Sequence[Waiver],
    today: dt.date,
) -> tuple[Status, Waiver | None, bool, tuple[str, ...]]:
    for waiver in waivers:
        if waiver.matches(rule.id, res_name, urn or ""):
            if waiver.expired(today):
                note = (
                    f"waiver by {waiver.owner} expired on {waiver.expires.isoformat()}: fix the "
                    "resource or renew the waiver in policies/waivers.yaml"
                )
                return "fail", waiver, True, (*messages, note)
            return "waived", waiver, False, tuple(messages)
    return "fail", None, False, tuple(messages)


def _aggregate(outcomes: Sequence[ResourceOutcome]) -> Status:
    statuses = {o.status for o in outcomes}
    order: tuple[Status, ...] = ("fail", "waived", "pass")
    for status in order:
        if status in statuses:
            return status
    return "not-applicable"


def evaluate_rule(
    rule: Rule,
    resources: Sequence[Resource],
    *,
    config: Mapping[str, object] | None = None,
    waivers: Sequence[Waiver] = (),
    today: dt.date | None = None,
) -> tuple[Status, tuple[ResourceOutcome, ...], str | None]:
    """One rule over a stack: its aggregated status, per-resource outcomes, and the reason
    when not applicable."""
    today = today or dt.date.today()
    outcomes: list[ResourceOutcome] = []
    if rule.stack_check is not None:
        findings = rule.stack_check(resources, config or {})
        if isinstance(findings, NotApplicable):
            return "not-applicable", (), findings.reason
        by_urn = {r.urn: r for r in resources}
        grouped: dict[str | None, list[str]] = {}
        for finding in findings:
            grouped.setdefault(finding.urn, []).append(finding.message)
        for urn, messages in grouped.items():
            target = by_urn.get(urn) if urn else None
            name = target.name if target else "stack"
            status, waiver, expired, msgs = _apply_waiver(rule, name, urn, messages, waivers, today)
            outcomes.append(
                ResourceOutcome(
                    name, urn, target.type if target else "stack", status, msgs, waiver, expired
                )
            )
        if not outcomes:
            outcomes.append(ResourceOutcome("stack", None, "stack", "pass"))
        return _aggregate(outcomes), tuple(outcomes), None
    assert rule.check is not None
    matching = [r for r in resources if r.type in rule.types]
    if not matching:
        return "not-applicable", (), f"no {', '.join(rule.types)} in the stack"
    for res in matching:
        result = rule.check(res)
        if isinstance(result, NotApplicable):
            outcomes.append(
                ResourceOutcome(res.name, res.urn, res.type, "not-applicable", reason=result.reason)
            )
        elif result:
            status, waiver, expired, msgs = _apply_waiver(
                rule, res.name, res.urn, result, waivers, today
            )
            outcomes.append(
                ResourceOutcome(res.name, res.urn, res.type, status, msgs, waiver, expired)
            )
        else:
            outcomes.append(ResourceOutcome(res.name, res.urn, res.type, "pass"))
    status = _aggregate(outcomes)
    reason = outcomes[0].reason if status == "not-applicable" else None
    return status, tuple(outcomes), reason


def _control(
    rule: Rule,
    level: Enforcement,
    status: Status,
    outcomes: tuple[ResourceOutcome, ...],
    reason: str | None,
) -> Control:
    evidence = tuple(
        f"{o.name}: {m}" for o in outcomes if o.status in ("fail", "waived") for m in o.messages
    )
    return Control(
        id=rule.id,
        title=rule.title,
        family=rule.family,
        severity=rule.severity,
        enforcement=level,
        status=status,
        rationale=rule.rationale,
        remediation=rule.remediation,
        references=rule.references.as_dict(),
        resources=outcomes,
        evidence=evidence,
        reason=reason,
    )


def evaluate_stack(
    stack: str,
    resources: Sequence[Resource],
    *,
    config: Mapping[str, object] | None = None,
    waivers: Sequence[Waiver] = (),
    today: dt.date | None = None,
    rules: Sequence[Rule] | None = None,
) -> Section:
    """Every rule over one stack's resources, as one report section."""
    rules = list(RULES) if rules is None else list(rules)
    config = config or {}
    levels = enforcement_levels(config, rules)
    controls = []
    for rule in rules:
        level = levels[rule.id]
        reason: str | None
        if level == "disabled":
            reason = f"disabled in the policy config of stack {stack}"
            controls.append(_control(rule, level, "not-applicable", (), reason))
            continue
        status, outcomes, reason = evaluate_rule(
            rule, resources, config=rule_config(config, rule.id), waivers=waivers, today=today
        )
        controls.append(_control(rule, level, status, outcomes, reason))
    return Section(f"stack {stack}", "cloud", tuple(controls))


# ----------------------------------------------------------------------------- hosts


REMEDIATION = {
    "bulwark verify": "Run `bulwark harden` on the host, then `bulwark verify` again.",
    "bulwark pooler check": "Set the app's prepare_threshold to what `bulwark pooler check` "
    "says is safe (None unless every layer supports prepared statements), then check again.",
}


def host_sections(report: VerifyReport, source: str | None = None) -> list[Section]:
    """Hosts' verification results as report sections (same control shape as the cloud); their
    source is the inventory verify read, else `source` (the results file)."""
    sections = []
    for host in report.hosts:
        controls = []
        for c in host.controls:
            refs = {
                k: ", ".join(map(str, v)) if isinstance(v, list) else str(v)
                for k, v in c.references.items()
                if v
            }
            outcome = ResourceOutcome(
                host.host,
                None,
                "host",
                c.status,
                tuple(m for m in (c.evidence,) if m),
                reason=c.reason,
            )
            controls.append(
                Control(
                    id=c.id,
                    title=c.title,
                    family=c.family,
                    severity="",
                    enforcement="mandatory",
                    status=c.status,
                    rationale=c.rationale,
                    remediation=REMEDIATION.get(report.tool, REMEDIATION["bulwark verify"]),
                    references=refs,
                    resources=(outcome,),
                    evidence=tuple(m for m in (c.evidence,) if m),
                    reason=c.reason,
                )
            )
        sections.append(
            Section(f"host {host.host}", "host", tuple(controls), report.inventory or source)
        )
    return sections


def read_host_results(path: Path) -> VerifyReport:
    """A `bulwark verify --json` file; a missing or malformed one is a one-line ConfigError."""
    try:
        raw = read_json(path)
        if not isinstance(raw, dict) or raw.get("schema") != VERIFY_SCHEMA or "hosts" not in raw:
            raise ValueError(f"no schema {VERIFY_SCHEMA} with hosts")
        report = VerifyReport.model_validate(raw)
    except FileNotFoundError:
        raise ConfigError(
            f"--hosts {path}: no such file: write it with `bulwark verify ... --json {path}`"
        ) from None
    except ValidationError as exc:
        field, msg = first_error(exc)
        raise ConfigError(
            f"--hosts {path}: {field}: {msg}: pass the file `bulwark verify --json` wrote"
        ) from None
    except ValueError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(
            f"--hosts {path}: not a bulwark verify JSON report ({first}): pass the file "
            "`bulwark verify --json` wrote"
        ) from None
    if not report.hosts or not all(h.controls for h in report.hosts):
        raise ConfigError(
            f"--hosts {path}: a report with no host or no control proves nothing: pass the "
            "file of a `bulwark verify --json` run that verified its hosts"
        )
    return report
