"""The Pulumi program: wiring only (stack config -> bulwark.cloud components -> outputs)."""

from __future__ import annotations

import pulumi

from bulwark.cloud.platform import build, settings_from_config
from bulwark.errors import ConfigError

try:
    settings = settings_from_config(f"stacks/Pulumi.{pulumi.get_stack()}.yaml")
except ConfigError as exc:
    # One line naming the field and the fix, before any resource is declared.
    raise SystemExit(f"error: {exc}") from None

for name, value in build(settings).items():
    pulumi.export(name, value)
