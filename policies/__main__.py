"""CrossGuard pack: wiring only. The rules and the adapter live in bulwark/policy/."""

from __future__ import annotations

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository root: bulwark.policy without installing

from bulwark.policy.crossguard import policies  # noqa: E402
from bulwark.policy.waivers import load_waivers  # noqa: E402

PolicyPack(
    name="bulwark",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=policies(waivers=load_waivers(HERE / "waivers.yaml")),
)
