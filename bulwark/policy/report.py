"""One audit, five shapes: text (terminal), Markdown, HTML (jinja2, self-contained), JSON
(`bulwark.audit/v1`) and SARIF 2.1.0. Summary first, then every control per section.

Reports carry messages and property names, never property values that could be secret: rules
do not echo values of secret-looking settings, and the mock run has already replaced secrets
with `[secret]`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from jinja2 import Environment, PackageLoader, select_autoescape

from bulwark.policy.evaluate import Audit, Control, Section
from bulwark.policy.rules import RULES
from bulwark.settings.load import repo_relative

Format = Literal["text", "md", "html", "json", "sarif"]
FORMATS: tuple[Format, ...] = ("text", "md", "html", "json", "sarif")
MARK = {"pass": "✓", "fail": "✗", "waived": "~", "not-applicable": "-", "error": "!"}
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}
# GitHub code scanning ranks alerts by this number (critical > 9.0, high 7.0-8.9, medium
# 4.0-6.9, low 0.1-3.9).
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0"}
HOST_SEVERITY = "high"  # a host control carries no severity of its own; a failing one matters
INFORMATION_URI = "https://github.com/acme/bulwark"
HELP_URI = f"{INFORMATION_URI}/blob/main/docs"
# The logical names of a stack's resources start with their component: its module.
COMPONENT_MODULES = {
    "network": "network", "database": "database", "pooler": "pooler", "cache": "cache",
    "service": "service", "ci": "ci", "apis": "project",
}  # fmt: skip


def _summary_line(audit: Audit) -> str:
    s = audit.summary
    verdict = "PASS" if audit.ok else "FAIL"
    return (
        f"{verdict}: {s['pass']} passed, {s['fail']} failed ({s['advisory']} advisory), "
        f"{s['waived']} waived, {s['error']} errors, {s['not-applicable']} not applicable"
    )


def _refs(control: Control) -> str:
    labels = {"cis": "CIS ", "devsec": "dev-sec "}
    parts = [f"{labels.get(k, '')}{v}" for k, v in control.references.items() if v]
    return ", ".join(parts) or "bulwark"


def _waiver_text(control: Control) -> list[str]:
    lines = []
    for o in control.resources:
        if o.waiver is not None:
            w = o.waiver
            state = "EXPIRED" if o.waiver_expired else "until"
            lines.append(
                f"waiver on {o.name}: {w.owner}, {state} {w.expires.isoformat()}: {w.reason}"
            )
    return lines


def render_text(audit: Audit) -> str:
    out = [f"bulwark audit: {_summary_line(audit)}"]
    for section in audit.sections:
        s = section.summary
        out.append(
            f"\n{section.name}: {s['pass']} passed, {s['fail']} failed, {s['waived']} waived, "
            f"{s['error']} errors, {s['not-applicable']} not applicable"
        )
        for c in section.controls:
            if c.status in ("pass", "not-applicable"):
                continue
            level = "" if c.enforcement == "mandatory" else f" [{c.enforcement}]"
            out.append(f"  {MARK[c.status]} {c.status:<6} {c.id}{level}: {c.title}")
            out.extend(f"      {line}" for line in c.evidence)
            out.extend(f"      {line}" for line in _waiver_text(c))
            if c.status in ("fail", "error"):
                out.append(f"      fix: {c.remediation}")
    out.extend(f"\nnote: {note}" for note in audit.notes)
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(audit: Audit) -> str:
    s = audit.summary
    out = [
        "# bulwark audit",
        "",
        f"**{_summary_line(audit)}** (generated {audit.generated_at})",
        "",
        "| section | pass | fail | waived | error | n/a |",
        "|---|---|---|---|---|---|",
    ]
    for sec in audit.sections:
        n = sec.summary
        out.append(
            f"| {sec.name} | {n['pass']} | {n['fail']} | {n['waived']} | {n['error']} | "
            f"{n['not-applicable']} |"
        )
    out.append(
        f"| **total** | {s['pass']} | {s['fail']} | {s['waived']} | {s['error']} | "
        f"{s['not-applicable']} |"
    )
    for note in audit.notes:
        out += ["", f"> note: {note}"]
    for sec in audit.sections:
        out += ["", f"## {sec.name}", "",
                "| status | control | severity | resources | evidence | references |",
                "|---|---|---|---|---|---|"]  # fmt: skip
        for c in sec.controls:
            names = ", ".join(sorted({o.name for o in c.resources})) or "-"
            detail = "<br>".join(_md(e) for e in (*c.evidence, *_waiver_text(c)))
            if not detail and c.reason:
                detail = _md(c.reason)
            level = "" if c.enforcement == "mandatory" else f" ({c.enforcement})"
            out.append(
                f"| {MARK[c.status]} {c.status}{level} | `{c.id}` {_md(c.title)} | "
                f"{c.severity or '-'} | {_md(names)} | {detail} | {_md(_refs(c))} |"
            )
    return "\n".join(out) + "\n"


def render_json(audit: Audit) -> str:
    return json.dumps(audit.as_dict(), indent=2) + "\n"


def render_html(audit: Audit) -> str:
    env = Environment(
        loader=PackageLoader("bulwark.policy", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = env.get_template("report.html.j2")
    return template.render(
        audit=audit,
        summary=audit.summary,
        summary_line=_summary_line(audit),
        refs=_refs,
        waivers=_waiver_text,
        order=_display_order,
    )


def _display_order(section: Section) -> list[Control]:
    """Failures first, then waived, errors, passes, not applicable; rule order within."""
    rank = {"fail": 0, "error": 1, "waived": 2, "pass": 3, "not-applicable": 4}
    return sorted(section.controls, key=lambda c: rank[c.status])


def _sarif_rule(
    rule_id: str, title: str, rationale: str, remediation: str, severity: str, help_page: str,
    properties: dict[str, object],
) -> dict[str, object]:  # fmt: skip
    return {
        "id": rule_id,
        "name": rule_id,
        "shortDescription": {"text": title},
        "fullDescription": {"text": rationale},
        "help": {"text": remediation},
        "helpUri": f"{HELP_URI}/{help_page}",
        "properties": {"security-severity": SECURITY_SEVERITY[severity], **properties},
        "defaultConfiguration": {"level": SARIF_LEVEL[severity]},
    }


@functools.cache
def _component_file(area: str) -> tuple[str, int] | None:
    """The source file (and the line of its component class) of the cloud area a resource's
    logical name starts with: where a setting left at its default is decided."""
    module = COMPONENT_MODULES.get(area)
    if module is None:
        return None
    path = Path(__file__).resolve().parents[1] / "cloud" / f"{module}.py"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    line = next((i for i, text in enumerate(lines, 1) if text.startswith("class ")), 1)
    return repo_relative(path), line


def _location(section: Section, name: str, urn: str | None) -> dict[str, object]:
    """Where a result points: the stack file's line of the setting behind the resource (its
    area: `bulwark:database`, `bulwark:service`, ...), else the area's component source, else
    the top of the stack file; for a host, its inventory (or the results file)."""
    uri, line = section.source or "stacks", 1
    if section.kind == "cloud":
        area = name.split("-", 1)[0]
        if (found := section.line_of(f"bulwark:{area}")) is not None and section.source:
            line = found
        elif (component := _component_file(area)) is not None:
            uri, line = component
    return {
        "physicalLocation": {
            "artifactLocation": {"uri": uri},
            "region": {"startLine": line},
        },
        "logicalLocations": [
            {"name": name, "fullyQualifiedName": urn or section.name, "kind": "resource"}
        ],
    }


def render_sarif(audit: Audit) -> str:
    """SARIF 2.1.0 as code scanning reads it: one run, a rule per control (policy rules from
    their metadata, host controls from the verify results), one result per failing or waived
    resource and per failing host control, each with a physical location in the repository
    (waived results carry an accepted suppression, as code scanners expect)."""
    rules = [
        _sarif_rule(
            r.id,
            r.title,
            r.rationale,
            r.remediation,
            r.severity,
            "policy.md#rules",
            {"family": r.family, "tags": [r.references.label], **r.references.as_dict()},
        )
        for r in RULES
    ]
    index = {str(r["id"]): i for i, r in enumerate(rules)}
    results: list[dict[str, object]] = []
    for section in audit.sections:
        for c in section.controls:
            if c.id not in index:  # a host control: its rule from the results themselves
                index[c.id] = len(rules)
                rules.append(
                    _sarif_rule(
                        c.id,
                        c.title,
                        c.rationale,
                        c.remediation,
                        HOST_SEVERITY,
                        "verify.md",
                        {"family": c.family, "tags": ["host"], **c.references},
                    )
                )
            for o in c.resources:
                if o.status not in ("fail", "waived", "error"):
                    continue
                severity = c.severity or HOST_SEVERITY
                detail = "; ".join(o.messages) or o.reason or c.title
                result: dict[str, object] = {
                    "ruleId": c.id,
                    "ruleIndex": index[c.id],
                    "level": SARIF_LEVEL[severity] if c.enforcement == "mandatory" else "note",
                    "message": {"text": f"{section.name}: {o.name}: {detail}"},
                    "locations": [_location(section, o.name, o.urn)],
                }
                if o.status == "waived" and o.waiver is not None:
                    result["suppressions"] = [
                        {
                            "kind": "external",
                            "status": "accepted",
                            "justification": f"{o.waiver.owner} until "
                            f"{o.waiver.expires.isoformat()}: {o.waiver.reason}",
                        }
                    ]
                results.append(result)
    sarif = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "bulwark",
                        "informationUri": INFORMATION_URI,
                        "version": "0.1.0",
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(sarif, indent=2) + "\n"


RENDERERS: dict[Format, Callable[[Audit], str]] = {
    "text": render_text,
    "md": render_markdown,
    "html": render_html,
    "json": render_json,
    "sarif": render_sarif,
}


def render(audit: Audit, fmt: Format) -> str:
    return RENDERERS[fmt](audit)
