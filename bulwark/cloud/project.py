"""The Google APIs the stack uses, enabled by the program so a new project just works."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from bulwark.cloud.options import child_options

# Every API a resource of this stack calls, and why it is here.
REQUIRED_APIS = (
    "compute.googleapis.com",  # VPC, subnets, firewall, the PgBouncer VM
    "servicenetworking.googleapis.com",  # private services access (Cloud SQL, Memorystore)
    "sqladmin.googleapis.com",  # Cloud SQL
    "redis.googleapis.com",  # Memorystore for Redis
    "run.googleapis.com",  # Cloud Run
    "secretmanager.googleapis.com",  # generated secrets
    "iam.googleapis.com",  # service accounts, Workload Identity Federation
    "iamcredentials.googleapis.com",  # CI impersonates the deployer with short-lived tokens
    "sts.googleapis.com",  # GitHub's OIDC token is exchanged here
    "cloudresourcemanager.googleapis.com",  # project IAM bindings
)


class ProjectApis(pulumi.ComponentResource):
    """Enable the APIs; other components depend on this one so they wait for it."""

    def __init__(
        self, name: str, *, project: str, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("bulwark:project:ProjectApis", name, None, opts)
        child = child_options(self, opts)
        self.services = [
            gcp.projects.Service(
                f"{name}-{api.split('.')[0]}",
                project=project,
                service=api,
                # Destroying this stack must not switch off APIs that other things may use.
                disable_on_destroy=False,
                opts=child,
            )
            for api in REQUIRED_APIS
        ]
        self.enabled = pulumi.Output.all(*[s.service for s in self.services])
        self.register_outputs({"enabled": self.enabled})
