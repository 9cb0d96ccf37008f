"""A service account with its project roles: what every workload and CI identity is made of."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp


@dataclass(frozen=True)
class Identity:
    """A service account, its `serviceAccount:` member, and its project role grants."""

    account: gcp.serviceaccount.Account
    member: pulumi.Output[str]
    roles: list[gcp.projects.IAMMember]


def identity(
    name: str,
    *,
    project: str,
    account_id: str,
    display_name: str,
    roles: Sequence[str] = (),
    opts: pulumi.ResourceOptions,
) -> Identity:
    """`<name>-sa`, and one `<name>-<service>-<role>` grant per project role (predefined roles
    only, each with a reason at its caller). Created under the caller's component, so the
    resources keep the names and URNs they had before this helper existed."""
    account = gcp.serviceaccount.Account(
        f"{name}-sa",
        project=project,
        account_id=account_id,
        display_name=display_name,
        opts=opts,
    )
    member = account.email.apply(lambda email: f"serviceAccount:{email}")
    grants = [
        gcp.projects.IAMMember(
            f"{name}-{role.split('/')[1].replace('.', '-')}",
            project=project,
            role=role,
            member=member,
            opts=opts,
        )
        for role in roles
    ]
    return Identity(account, member, grants)
