"""Paths of the real stacks and policies, and helpers to write variants of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulwark.cloud.plan import Plan, run_plan
from bulwark.policy.rules import Resource

ROOT = Path(__file__).resolve().parents[2]
STACKS_DIR = ROOT / "stacks"
POLICIES_DIR = ROOT / "policies"


@pytest.fixture(scope="session")
def prod_plan() -> Plan:
    return run_plan("prod", STACKS_DIR)


def as_resources(plan: Plan) -> list[Resource]:
    return [Resource(r.type, r.name, r.urn, r.inputs) for r in plan.resources]
