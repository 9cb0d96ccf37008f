"""Verification results: per control pass / fail / not-applicable / error, per host, and the JSON
shape the audit report reads for hosts."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

Status = Literal["pass", "fail", "not-applicable", "error"]
SCHEMA = "bulwark.verify/v1"


class ControlResult(BaseModel):
    id: str
    title: str
    family: str
    status: Status
    rationale: str
    references: dict[str, object]
    evidence: str | None = None  # what the host showed, on failure
    reason: str | None = None  # why not applicable, or what broke on error
    seconds: float = 0.0


class HostResult(BaseModel):
    host: str
    controls: list[ControlResult] = Field(default_factory=list)

    @property
    def summary(self) -> dict[str, int]:
        counts = {"pass": 0, "fail": 0, "not-applicable": 0, "error": 0}
        for result in self.controls:
            counts[result.status] += 1
        return counts

    @property
    def ok(self) -> bool:
        summary = self.summary
        return summary["fail"] == 0 and summary["error"] == 0


class Report(BaseModel):
    schema_: str = Field(default=SCHEMA, alias="schema")
    tool: str = "bulwark verify"
    generated_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())
    # The inventory the hosts came from (repository-relative), for reports that point at it.
    inventory: str | None = None
    hosts: list[HostResult] = Field(default_factory=list)

    model_config = {"populate_by_name": True}

    @property
    def ok(self) -> bool:
        return bool(self.hosts) and all(h.ok for h in self.hosts)

    def host(self, name: str) -> HostResult:
        for h in self.hosts:
            if h.host == name:
                return h
        raise KeyError(name)

    def to_json(self) -> str:
        data = self.model_dump(by_alias=True)
        for host, result in zip(data["hosts"], self.hosts, strict=True):
            host["summary"] = result.summary
        return json.dumps(data, indent=2)

    def write(self, path: Path) -> None:
        path.write_text(self.to_json() + "\n")

    def to_junit(self) -> str:
        """JUnit XML, a test suite per host and a test case per control: what CI systems show.
        Not applicable is a skip (with its reason), fail a failure (with the evidence)."""
        suites = ET.Element("testsuites", name=self.tool)
        for host in self.hosts:
            counts = host.summary
            suite = ET.SubElement(
                suites,
                "testsuite",
                name=host.host,
                tests=str(len(host.controls)),
                failures=str(counts["fail"]),
                errors=str(counts["error"]),
                skipped=str(counts["not-applicable"]),
                time=f"{sum(c.seconds for c in host.controls):.3f}",
                timestamp=self.generated_at,
            )
            for c in host.controls:
                case = ET.SubElement(
                    suite, "testcase", classname=f"{host.host}.{c.family}", name=c.id,
                    time=f"{c.seconds:.3f}",
                )  # fmt: skip
                if c.status == "fail":
                    ET.SubElement(case, "failure", message=c.evidence or c.title).text = c.title
                elif c.status == "error":
                    ET.SubElement(case, "error", message=c.reason or "error").text = c.title
                elif c.status == "not-applicable":
                    ET.SubElement(case, "skipped", message=c.reason or "not applicable")
        ET.indent(suites)
        return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"

    @classmethod
    def read(cls, path: Path) -> Report:
        return cls.model_validate_json(path.read_text())
