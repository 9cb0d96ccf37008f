"""Fixtures of the Pulumi mock tests: each stack's plan, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulwark.cloud.plan import Plan, run_plan

STACKS_DIR = Path(__file__).resolve().parents[2] / "stacks"
STACKS = ("dev", "staging", "prod")


@pytest.fixture(scope="session")
def plans() -> dict[str, Plan]:
    return {stack: run_plan(stack, STACKS_DIR) for stack in STACKS}


@pytest.fixture(params=STACKS)
def plan(request: pytest.FixtureRequest, plans: dict[str, Plan]) -> Plan:
    return plans[request.param]
