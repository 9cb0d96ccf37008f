"""The rules table in docs/policy.md, generated from the rules' metadata (a test keeps it in
sync)."""

from __future__ import annotations

from bulwark.policy.rules import RULES


def rules_table() -> str:
    """Markdown: id, what it wants, severity, enforcement default, references."""
    lines = [
        "| id | control | severity | default | CIS GCP v4 | checkov |",
        "|---|---|---|---|---|---|",
    ]
    for rule in RULES:
        lines.append(
            f"| `{rule.id}` | {rule.title} | {rule.severity} | {rule.default_enforcement} | "
            f"{rule.references.cis or '-'} | {rule.references.checkov or '-'} |"
        )
    return "\n".join(lines)
