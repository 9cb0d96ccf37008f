"""Waivers: a version-controlled file (policies/waivers.yaml) that accepts one rule's failure
on one resource of one stack, with an owner, a reason and an expiry date.

A waived failure is still reported (as `waived`, with who and until when); an expired waiver
no longer waives (the control fails and says so); a waiver naming a rule or a resource that
does not exist is an input error, because it would silently waive nothing.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from bulwark.errors import ConfigError
from bulwark.settings.load import read_yaml

WAIVERS_FILE = Path("policies/waivers.yaml")
MAX_WAIVER_DAYS = 92  # a quarter: a waiver is reviewed at least that often
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _calendar_date(value: object) -> object:
    """A date as written (YAML's 2027-01-01, or the same text quoted), never a number: pydantic
    would read 1767225600 as a Unix time and 0 as 1970-01-01."""
    if isinstance(value, dt.date) or (
        isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)
    ):
        return value
    raise ValueError("not a date: use YYYY-MM-DD")


class Waiver(BaseModel):
    """One accepted failure: which rule, where, who owns it, why, until when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: NonEmpty = Field(description="Rule id, e.g. sql-ha-in-prod.")
    stack: NonEmpty = Field(description="Stack the waiver applies to (dev, staging, prod).")
    resource: NonEmpty = Field(description="Logical resource name or full URN.")
    owner: NonEmpty = Field(description="Who answers for it (an email or a team).")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=10)] = Field(
        description="Why the failure is accepted, in a sentence."
    )
    expires: Annotated[dt.date, BeforeValidator(_calendar_date)] = Field(
        description="Last day the waiver holds (YYYY-MM-DD)."
    )

    def matches(self, rule_id: str, name: str, urn: str) -> bool:
        return self.rule == rule_id and self.resource in (name, urn)

    def expired(self, today: dt.date) -> bool:
        return today > self.expires

    def as_dict(self) -> dict[str, str]:
        return {
            "rule": self.rule,
            "stack": self.stack,
            "resource": self.resource,
            "owner": self.owner,
            "reason": self.reason,
            "expires": self.expires.isoformat(),
        }


class WaiverFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    waivers: list[Waiver] = Field(default_factory=list)


def load_waivers(path: Path, today: dt.date | None = None) -> list[Waiver]:
    """The waivers in `path` (none if it does not exist); a bad entry is a one-line ConfigError
    naming the entry, the field and the fix. The terms in policies/README.md hold for every
    entry: none for prod, and an expiry at most a quarter after `today`."""
    if not path.exists():
        return []
    doc = read_yaml(path) or {}
    try:
        waivers = WaiverFile.model_validate(doc).waivers
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        where = f"waivers[{loc[1]}].{'.'.join(loc[2:])}" if len(loc) > 2 else ".".join(loc)
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "string_type" and isinstance(err.get("input"), bool):
            msg = f"{err['input']} is YAML's reading of yes/no/true/false: quote the text ('no')"
        elif err["type"] == "missing":
            msg = "missing: add it (rule, stack, resource, owner, reason, expires)"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field: remove it or fix its spelling"
        elif "date" in err["type"]:
            msg = "not a date: use YYYY-MM-DD"
        elif err["type"] == "string_too_short":
            msg = "too short: say who owns it and why, in words"
        raise ConfigError(f"{path}: {where}: {msg}") from None
    horizon = (today or dt.date.today()) + dt.timedelta(days=MAX_WAIVER_DAYS)
    for i, waiver in enumerate(waivers):
        if waiver.stack == "prod":
            raise ConfigError(
                f"{path}: waivers[{i}].stack: prod takes no waivers: fix {waiver.resource} "
                "instead (policies/README.md)"
            )
        if waiver.expires > horizon:
            raise ConfigError(
                f"{path}: waivers[{i}].expires: {waiver.expires.isoformat()} is more than a "
                f"quarter away: set it to {horizon.isoformat()} or earlier, and review the "
                "waiver then"
            )
    return waivers


def check_waivers(
    waivers: Sequence[Waiver],
    *,
    rule_ids: Iterable[str],
    stacks: Iterable[str],
    stack: str,
    resources: Iterable[tuple[str, str]],
    path: Path = WAIVERS_FILE,
) -> list[Waiver]:
    """The waivers of `stack`, after refusing any that name an unknown rule or stack, or a
    resource (name, urn) the stack does not declare."""
    known_rules, known_stacks = set(rule_ids), set(stacks)
    pairs = list(resources)
    names = {n for n, _ in pairs} | {u for _, u in pairs}
    mine = []
    for i, waiver in enumerate(waivers):
        if waiver.rule not in known_rules:
            raise ConfigError(
                f"{path}: waivers[{i}].rule: {waiver.rule!r} is not a bulwark rule: use an id "
                "from `bulwark audit --list-rules` (docs/policy.md)"
            )
        if waiver.stack not in known_stacks:
            raise ConfigError(
                f"{path}: waivers[{i}].stack: {waiver.stack!r} has no stacks/Pulumi."
                f"{waiver.stack}.yaml: use one of {', '.join(sorted(known_stacks))}"
            )
        if waiver.stack != stack:
            continue
        if waiver.resource not in names:
            raise ConfigError(
                f"{path}: waivers[{i}].resource: {waiver.resource!r} is not a resource of "
                f"stack {stack}: use a logical name or URN from `bulwark plan --stack {stack}`"
            )
        mine.append(waiver)
    return mine
