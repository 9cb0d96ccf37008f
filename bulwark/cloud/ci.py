"""CI identity: GitHub Actions deploys through Workload Identity Federation, with no key."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from bulwark.cloud.options import child_options
from bulwark.settings.cloud import CiSettings

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"

# What `pulumi up` of this stack needs from CI, predefined roles only (no owner/editor:
# CKV_GCP_117), and nothing that lets the deployer make itself owner (the policy rule
# iam-no-owner-escalation): it creates service accounts but cannot change IAM on them
# (serviceAccountCreator, not serviceAccountAdmin), and it may grant project roles only to
# the workloads' own list (a conditioned projectIamAdmin, only in stacks that grant any). So
# the deployer's own grants, and who may act as which account, are applied by a project owner
# (the first `pulumi up`, and any change to them); CI applies everything else.
DEPLOYER_ROLES = (
    "roles/serviceusage.serviceUsageAdmin",  # enable the APIs
    "roles/compute.networkAdmin",  # VPC, subnets, router, NAT, peering range
    "roles/compute.securityAdmin",  # firewall rules
    "roles/compute.instanceAdmin.v1",  # the PgBouncer VM
    "roles/servicenetworking.networksAdmin",  # private services access
    "roles/cloudsql.admin",  # Cloud SQL instance, database, user
    "roles/redis.admin",  # Memorystore
    "roles/run.admin",  # Cloud Run service and its invoker bindings
    "roles/secretmanager.admin",  # secrets, versions, per-secret access
    "roles/iam.serviceAccountCreator",  # runtime and VM service accounts (create, not grant)
    "roles/iam.workloadIdentityPoolAdmin",  # this pool and provider
    "roles/iam.securityReviewer",  # read IAM policies, so refresh and drift previews work
)
PROJECT_IAM_ADMIN = "roles/resourcemanager.projectIamAdmin"


def grant_only(roles: Sequence[str]) -> str:
    """CEL that lets a projectIamAdmin grant (and revoke) these roles and no other."""
    listed = ", ".join(f"'{role}'" for role in roles)
    return f"api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly([{listed}])"


def attribute_condition(settings: CiSettings) -> str:
    """CEL that admits tokens of one repository (and id, if known) on one branch only."""
    parts = [
        f"assertion.repository == '{settings.github_repository}'",
        f"assertion.ref == 'refs/heads/{settings.branch}'",
    ]
    if settings.github_repository_id:
        parts.append(f"assertion.repository_id == '{settings.github_repository_id}'")
    return " && ".join(parts)


@dataclass(frozen=True)
class GithubDeployerArgs:
    """+ settings: repository, its id, branch; + base_name: prefix of resource names;
    + acts_as: service accounts (resource names) the deployer may deploy workloads as;
    + grants: project roles the stack grants its workloads, the only ones the deployer may."""

    project: str
    base_name: str
    settings: CiSettings
    acts_as: Sequence[pulumi.Input[str]] = ()
    grants: Sequence[str] = ()


class GithubDeployer(pulumi.ComponentResource):
    """Pool, GitHub OIDC provider with a pinned condition, and the deployer account.

    Outputs: `provider_name` (for google-github-actions/auth's workload_identity_provider) and
    `service_account` (its service_account input).
    """

    def __init__(
        self, name: str, args: GithubDeployerArgs, *, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("bulwark:ci:GithubDeployer", name, None, opts)
        child = child_options(self, opts)
        s = args.settings
        self.pool = gcp.iam.WorkloadIdentityPool(
            f"{name}-pool",
            project=args.project,
            workload_identity_pool_id=f"{args.base_name}-github",
            display_name="GitHub Actions",
            description=f"Deploys of {s.github_repository} ({s.branch})",
            opts=child,
        )
        self.provider = gcp.iam.WorkloadIdentityPoolProvider(
            f"{name}-provider",
            project=args.project,
            workload_identity_pool_id=self.pool.workload_identity_pool_id,
            workload_identity_pool_provider_id="github",
            display_name="GitHub OIDC",
            attribute_mapping={
                "google.subject": "assertion.sub",
                "attribute.repository": "assertion.repository",
                "attribute.repository_id": "assertion.repository_id",
                "attribute.ref": "assertion.ref",
            },
            attribute_condition=attribute_condition(s),
            oidc=gcp.iam.WorkloadIdentityPoolProviderOidcArgs(issuer_uri=GITHUB_ISSUER),
            opts=child,
        )
        self.account = gcp.serviceaccount.Account(
            f"{name}-sa",
            project=args.project,
            account_id=f"{args.base_name}-deployer",
            display_name="CI deployer (bulwark)",
            opts=child,
        )
        member = self.account.email.apply(lambda email: f"serviceAccount:{email}")
        self.roles = [
            gcp.projects.IAMMember(
                f"{name}-{role.split('/')[1].replace('.', '-')}",
                project=args.project,
                role=role,
                member=member,
                opts=child,
            )
            for role in DEPLOYER_ROLES
        ]
        if args.grants:
            self.roles.append(
                gcp.projects.IAMMember(
                    f"{name}-resourcemanager-projectIamAdmin",
                    project=args.project,
                    role=PROJECT_IAM_ADMIN,
                    member=member,
                    condition=gcp.projects.IAMMemberConditionArgs(
                        title="workload roles only",
                        description="Grant and revoke the roles this stack gives its "
                        "workloads, and no other (no way to owner).",
                        expression=grant_only(args.grants),
                    ),
                    opts=child,
                )
            )
        # actAs on the workloads' own accounts only, not on every account in the project.
        self.acts_as = [
            gcp.serviceaccount.IAMMember(
                f"{name}-acts-as-{i}",
                service_account_id=account,
                role="roles/iam.serviceAccountUser",
                member=member,
                opts=child,
            )
            for i, account in enumerate(args.acts_as)
        ]
        # Only identities from the pinned repository may impersonate the deployer.
        self.impersonation = gcp.serviceaccount.IAMMember(
            f"{name}-wif-user",
            service_account_id=self.account.name,
            role="roles/iam.workloadIdentityUser",
            member=self.pool.name.apply(
                lambda pool: (
                    f"principalSet://iam.googleapis.com/{pool}/attribute.repository/"
                    f"{s.github_repository}"
                )
            ),
            opts=child,
        )
        self.provider_name = self.provider.name
        self.service_account = self.account.email
        self.register_outputs(
            {"provider_name": self.provider_name, "service_account": self.service_account}
        )
