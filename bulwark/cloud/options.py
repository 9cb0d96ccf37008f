"""Resource options shared by the components."""

from __future__ import annotations

import pulumi


def child_options(
    parent: pulumi.Resource,
    opts: pulumi.ResourceOptions | None,
    *also: pulumi.Resource,
) -> pulumi.ResourceOptions:
    """Options for a component's children: `parent`, plus the component's own `depends_on`.

    Pulumi does not pass a component's depends_on down to its children, so without this the
    children of a component that depends on ProjectApis would race the API enablement.
    """
    inherited: list[pulumi.Resource] = []
    if opts is not None and opts.depends_on is not None:
        deps = opts.depends_on
        if isinstance(deps, pulumi.Resource):
            inherited.append(deps)
        elif isinstance(deps, list):
            inherited.extend(d for d in deps if isinstance(d, pulumi.Resource))
    return pulumi.ResourceOptions(parent=parent, depends_on=[*inherited, *also])
