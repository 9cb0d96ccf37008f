"""The Pulumi program: wiring only (stack config -> bulwark.cloud components -> outputs).

The cloud components are not built yet; until they are, `pulumi up` stops here with a clear
message instead of deploying an empty stack.
"""

from __future__ import annotations

raise SystemExit(
    "bulwark's cloud stack is not implemented yet: see the README's 'What works today' table"
)
