"""A value kept in Secret Manager, readable only by the members named."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from bulwark.cloud.options import child_options


@dataclass(frozen=True)
class StoredSecretArgs:
    """+ secret_id: Secret Manager id; + value: the secret (marked secret here again); + labels."""

    project: str
    secret_id: str
    value: pulumi.Input[str]
    labels: dict[str, str] = field(default_factory=dict)


class StoredSecret(pulumi.ComponentResource):
    """A Secret with automatic replication and one version holding the value.

    Readers are granted on the secret (`grant`), never project-wide, so a reader of one secret
    cannot read the others.
    """

    def __init__(
        self, name: str, args: StoredSecretArgs, *, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("bulwark:secrets:StoredSecret", name, None, opts)
        self._base = name
        child = self._child = child_options(self, opts)
        self.secret = gcp.secretmanager.Secret(
            f"{name}-secret",
            project=args.project,
            secret_id=args.secret_id,
            replication=gcp.secretmanager.SecretReplicationArgs(
                auto=gcp.secretmanager.SecretReplicationAutoArgs()
            ),
            labels=args.labels,
            opts=child,
        )
        self.version = gcp.secretmanager.SecretVersion(
            f"{name}-version",
            secret=self.secret.id,
            secret_data=pulumi.Output.secret(args.value),
            opts=child,
        )
        self.secret_id = self.secret.secret_id
        self.register_outputs({"secret_id": self.secret_id, "version": self.version.name})

    def grant(self, name: str, member: pulumi.Input[str]) -> gcp.secretmanager.SecretIamMember:
        """Let one more member read this secret (e.g. a service account created later)."""
        return gcp.secretmanager.SecretIamMember(
            f"{self._base}-reader-{name}",
            project=self.secret.project,
            secret_id=self.secret.secret_id,
            role="roles/secretmanager.secretAccessor",
            member=member,
            opts=self._child,
        )
