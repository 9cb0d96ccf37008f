"""CI identity: GitHub Actions deploys through Workload Identity Federation, with no key."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from bulwark.cloud.identity import identity
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
# What a pull request's `pulumi preview` may read, and nothing it could change or decrypt with:
# the services' own viewer roles (no basic roles/viewer, no secret payloads, no actAs). The
# state bucket and the secrets key are outside the stack; docs/ci.md grants them.
READER_ROLES = (
    "roles/serviceusage.serviceUsageViewer",  # which APIs are on
    "roles/compute.viewer",  # VPC, subnets, router, firewall, the PgBouncer VM
    "roles/cloudsql.viewer",  # the instance, its databases and users
    "roles/redis.viewer",  # Memorystore
    "roles/run.viewer",  # the service
    "roles/secretmanager.viewer",  # secrets' metadata, not their values
    "roles/iam.securityReviewer",  # IAM policies (the grants are resources of the stack)
)


def grant_only(roles: Sequence[str]) -> str:
    """CEL that lets a projectIamAdmin grant (and revoke) these roles and no other."""
    listed = ", ".join(f"'{role}'" for role in roles)
    return f"api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly([{listed}])"


def attribute_condition(settings: CiSettings, *, pull_requests: bool = False) -> str:
    """CEL that admits tokens of one repository (and id, if known) on one branch only; with
    `pull_requests`, of pull requests into that branch instead (the read-only previewer)."""
    parts = [f"assertion.repository == '{settings.github_repository}'"]
    if pull_requests:
        parts += [
            "assertion.event_name == 'pull_request'",
            f"assertion.base_ref == '{settings.branch}'",
        ]
    else:
        parts.append(f"assertion.ref == 'refs/heads/{settings.branch}'")
    if settings.github_repository_id:
        parts.append(f"assertion.repository_id == '{settings.github_repository_id}'")
    return " && ".join(parts)


def github_provider(
    name: str,
    pool: gcp.iam.WorkloadIdentityPool,
    condition: str,
    child: pulumi.ResourceOptions,
    *,
    project: str,
    display_name: str,
) -> gcp.iam.WorkloadIdentityPoolProvider:
    """GitHub's OIDC issuer in `pool`, with the claims the conditions and principals use."""
    return gcp.iam.WorkloadIdentityPoolProvider(
        name,
        project=project,
        workload_identity_pool_id=pool.workload_identity_pool_id,
        workload_identity_pool_provider_id="github",
        display_name=display_name,
        attribute_mapping={
            "google.subject": "assertion.sub",
            "attribute.repository": "assertion.repository",
            "attribute.repository_id": "assertion.repository_id",
            "attribute.ref": "assertion.ref",
        },
        attribute_condition=condition,
        oidc=gcp.iam.WorkloadIdentityPoolProviderOidcArgs(issuer_uri=GITHUB_ISSUER),
        opts=child,
    )


def repository_principals(
    pool: gcp.iam.WorkloadIdentityPool, repository: str
) -> pulumi.Output[str]:
    """Every identity of `pool` from one repository (the pool's provider admits no other)."""
    return pool.name.apply(
        lambda name: f"principalSet://iam.googleapis.com/{name}/attribute.repository/{repository}"
    )


def impersonation(
    name: str,
    account: gcp.serviceaccount.Account,
    pool: gcp.iam.WorkloadIdentityPool,
    repository: str,
    child: pulumi.ResourceOptions,
) -> gcp.serviceaccount.IAMMember:
    """`<name>-wif-user`: the pool's identities from `repository`, and no other, may act as
    `account`."""
    return gcp.serviceaccount.IAMMember(
        f"{name}-wif-user",
        service_account_id=account.name,
        role="roles/iam.workloadIdentityUser",
        member=repository_principals(pool, repository),
        opts=child,
    )


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
        self.provider = github_provider(
            f"{name}-provider",
            self.pool,
            attribute_condition(s),
            child,
            project=args.project,
            display_name="GitHub OIDC",
        )
        deployer = identity(
            name,
            project=args.project,
            account_id=f"{args.base_name}-deployer",
            display_name="CI deployer (bulwark)",
            roles=DEPLOYER_ROLES,
            opts=child,
        )
        self.account, member, self.roles = deployer.account, deployer.member, deployer.roles
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
        self.impersonation = impersonation(
            name, self.account, self.pool, s.github_repository, child
        )
        self.provider_name = self.provider.name
        self.service_account = self.account.email
        self.register_outputs(
            {"provider_name": self.provider_name, "service_account": self.service_account}
        )


@dataclass(frozen=True)
class GithubReaderArgs:
    """+ settings: repository, its id, branch; + base_name: prefix of resource names."""

    project: str
    base_name: str
    settings: CiSettings


class GithubReader(pulumi.ComponentResource):
    """What a pull request's `pulumi preview` runs as: its own pool (so no token it admits can
    reach the deployer), a provider admitting pull requests into the branch, and an account
    with read roles only (the rule wif-pull-requests-read-only holds it to that).

    Outputs: `provider_name` and `service_account`, as for the deployer.
    """

    def __init__(
        self, name: str, args: GithubReaderArgs, *, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("bulwark:ci:GithubReader", name, None, opts)
        child = child_options(self, opts)
        s = args.settings
        self.pool = gcp.iam.WorkloadIdentityPool(
            f"{name}-pool",
            project=args.project,
            workload_identity_pool_id=f"{args.base_name}-github-ro",
            display_name="GitHub Actions (previews)",
            description=f"Pull requests into {s.branch} of {s.github_repository}: read only",
            opts=child,
        )
        self.provider = github_provider(
            f"{name}-provider",
            self.pool,
            attribute_condition(s, pull_requests=True),
            child,
            project=args.project,
            display_name="GitHub OIDC (pull requests)",
        )
        reader = identity(
            name,
            project=args.project,
            account_id=f"{args.base_name}-reader",
            display_name="CI previewer, read only (bulwark)",
            roles=READER_ROLES,
            opts=child,
        )
        self.account, self.roles = reader.account, reader.roles
        self.impersonation = impersonation(
            name, self.account, self.pool, s.github_repository, child
        )
        self.provider_name = self.provider.name
        self.service_account = self.account.email
        self.register_outputs(
            {"provider_name": self.provider_name, "service_account": self.service_account}
        )
