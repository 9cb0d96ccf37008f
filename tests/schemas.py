"""One JSON Schema per command's JSON form (bulwark/schemas/<command>.json), checked wherever a
test runs that form: the contract scripts and CI steps rely on."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMAS = Path(__file__).resolve().parents[1] / "bulwark" / "schemas"


@cache
def validator(command: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{command}.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def check(command: str, data: Any) -> Any:
    """`data` (parsed, or the JSON text) against the command's schema; returns it parsed."""
    if isinstance(data, str):
        data = json.loads(data)
    errors = sorted(validator(command).iter_errors(data), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{command}: {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"[:400]
        for e in errors[:10]
    )
    return data
