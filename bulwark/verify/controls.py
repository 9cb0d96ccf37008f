"""Control metadata: one stable id per control, with its title, rationale and the CIS and dev-sec
items it corresponds to. Tests in bulwark/verify/suite carry the id as a pytest mark."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

MARK = "bulwark_control"
# The benchmark the `cis` item numbers come from (its Ubuntu 24.04 sibling numbers most items
# the same way).
CIS_BENCHMARK = "CIS Debian Linux 12 Benchmark v1.1.0"


@dataclass(frozen=True)
class Control:
    id: str
    title: str
    family: str
    rationale: str
    cis: str = ""
    devsec: tuple[str, ...] = field(default_factory=tuple)

    @property
    def references(self) -> dict[str, object]:
        refs: dict[str, object] = {"cis": self.cis or None, "devsec": list(self.devsec)}
        if self.cis:
            refs["cis_benchmark"] = CIS_BENCHMARK
        return refs


CONTROLS: dict[str, Control] = {}


def control(
    control_id: str,
    title: str,
    *,
    rationale: str,
    cis: str = "",
    devsec: tuple[str, ...] | str = (),
) -> pytest.MarkDecorator:
    """Declare a control and return the mark that ties a test (or a parameter) to it."""
    if control_id in CONTROLS:
        raise ValueError(f"control id {control_id} is declared twice")
    family = control_id.split("-", 1)[0]
    CONTROLS[control_id] = Control(
        id=control_id,
        title=title,
        family=family,
        rationale=rationale,
        cis=cis,
        devsec=(devsec,) if isinstance(devsec, str) else tuple(devsec),
    )
    mark: pytest.MarkDecorator = getattr(pytest.mark, MARK)(control_id)
    return mark


def not_applicable(reason: str) -> None:
    """End a control as not applicable to this host, with the reason in the report."""
    pytest.skip(f"not applicable: {reason}")
