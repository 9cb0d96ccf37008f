"""The pooler check's finding in the verify results shape (bulwark.verify/v1), so that
`bulwark audit --hosts` reads it beside the hosts' controls: one report for auditors."""

from __future__ import annotations

from bulwark.pooler.check import CheckResult
from bulwark.verify.results import ControlResult, HostResult, Report

REFERENCES: dict[str, object] = {"cis": None, "devsec": [], "anchor": "psycopg + PgBouncer"}


def as_verify_report(result: CheckResult) -> Report:
    """Two controls for the pooler the check ran against: the app's settings survive it, and
    prepared statements off survive it (if not, the pooler itself is broken)."""

    def control(cid: str, title: str, rationale: str, ok: bool, evidence: str) -> ControlResult:
        return ControlResult(
            id=cid,
            title=title,
            family="pooler",
            status="pass" if ok else "fail",
            rationale=rationale,
            references=REFERENCES,
            evidence=None if ok else evidence,
            seconds=round(sum(run.seconds for run in result.workloads), 2),
        )

    unprepared = result.unprepared
    controls = [
        control(
            "pooler-check-driver-settings",
            f"The app's driver settings ({result.tested.label}) survive this transaction pooler",
            "Prepared statements that meet another server connection abort transactions, "
            "and the pool starves under load.",
            result.safe,
            result.verdict(),
        ),
        control(
            "pooler-check-unprepared",
            "With prepared statements off, the concurrent workload runs without errors",
            "If even prepare_threshold=None fails, the pooler itself (limits, auth) is broken.",
            unprepared.safe,
            ", ".join(f"{n} x {k}" for k, n in (unprepared.refused + unprepared.errors).items()),
        ),
    ]
    return Report(tool="bulwark pooler check", hosts=[HostResult(host=f"pooler {result.target}",
                                                                 controls=controls)])  # fmt: skip
