"""Cloud Run v2: image by digest, its own service account, secrets by reference, private egress."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from bulwark.cloud.identity import identity
from bulwark.cloud.options import child_options
from bulwark.cloud.secrets import StoredSecret
from bulwark.pooling.keys import LIBPQ_LABEL, POOL_ENV, SURGE_LABEL, WORKERS_ENV
from bulwark.settings.cloud import ServiceSettings


@dataclass(frozen=True)
class CloudRunArgs:
    """+ settings: service settings; + network_id, subnet_id: Direct VPC egress;
    + secrets: env name -> StoredSecret (injected by reference, latest version);
    + env: plain env values set by the stack (pooler sizing, Redis host, driver settings)."""

    project: str
    region: str
    base_name: str
    settings: ServiceSettings
    network_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    secrets: Mapping[str, StoredSecret]
    env: Mapping[str, pulumi.Input[str]]
    labels: dict[str, str]


class CloudRunService(pulumi.ComponentResource):
    """The service, its dedicated runtime account, secret read grants, and invoker bindings.

    The runtime account has no project role at all: only secretAccessor on the secrets the
    service reads. Egress to private ranges goes through the VPC (Cloud SQL, Memorystore, the
    pooler); ingress and invokers come from settings and are internal and empty by default.
    """

    def __init__(
        self, name: str, args: CloudRunArgs, *, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("bulwark:service:CloudRunService", name, None, opts)
        child = child_options(self, opts)
        s = args.settings
        runtime = identity(  # no project role at all
            name,
            project=args.project,
            account_id=f"{args.base_name}-run",
            display_name="Cloud Run runtime (bulwark)",
            opts=child,
        )
        self.account, self.member = runtime.account, runtime.member
        self.secret_readers = [secret.grant("run", self.member) for secret in args.secrets.values()]
        # The budget's client side, stamped where policy reads it: workers and the per-process
        # pool in the app's environment, the rollout surge (and the image's libpq, which decides
        # whether psycopg may prepare) as labels.
        sizing = {WORKERS_ENV: str(s.workers_per_instance), POOL_ENV: str(s.db_pool_size)}
        labels = args.labels | {SURGE_LABEL: str(s.rollout_surge_percent)}
        if s.libpq_major:
            labels[LIBPQ_LABEL] = str(s.libpq_major)
        envs = [
            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(name=key, value=value)
            for key, value in {**sizing, **args.env, **s.env}.items()
        ] + [
            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                name=key,
                value_source=gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceArgs(
                    secret_key_ref=gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceSecretKeyRefArgs(
                        secret=secret.secret_id, version="latest"
                    )
                ),
            )
            for key, secret in args.secrets.items()
        ]
        self.service = gcp.cloudrunv2.Service(
            f"{name}-service",
            project=args.project,
            name=f"{args.base_name}-app",
            location=args.region,
            ingress=s.ingress,
            deletion_protection=s.deletion_protection,
            # Invoker IAM stays on: who may call is decided by the bindings below.
            invoker_iam_disabled=False,
            labels=labels,
            template=gcp.cloudrunv2.ServiceTemplateArgs(
                service_account=self.account.email,
                max_instance_request_concurrency=s.concurrency,
                timeout=f"{s.request_timeout_seconds}s",
                scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(
                    min_instance_count=s.min_instances, max_instance_count=s.max_instances
                ),
                vpc_access=gcp.cloudrunv2.ServiceTemplateVpcAccessArgs(
                    network_interfaces=[
                        gcp.cloudrunv2.ServiceTemplateVpcAccessNetworkInterfaceArgs(
                            network=args.network_id, subnetwork=args.subnet_id
                        )
                    ],
                    egress="PRIVATE_RANGES_ONLY",
                ),
                containers=[
                    gcp.cloudrunv2.ServiceTemplateContainerArgs(
                        image=s.image,
                        ports=gcp.cloudrunv2.ServiceTemplateContainerPortsArgs(
                            container_port=s.port
                        ),
                        resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                            limits={"cpu": s.cpu, "memory": s.memory}, startup_cpu_boost=True
                        ),
                        envs=envs,
                        startup_probe=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeArgs(
                            http_get=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeHttpGetArgs(
                                path=s.startup_probe_path, port=s.port
                            ),
                            period_seconds=2,
                            failure_threshold=30,
                            timeout_seconds=1,
                        ),
                        liveness_probe=gcp.cloudrunv2.ServiceTemplateContainerLivenessProbeArgs(
                            http_get=gcp.cloudrunv2.ServiceTemplateContainerLivenessProbeHttpGetArgs(
                                path=s.liveness_probe_path, port=s.port
                            ),
                            period_seconds=15,
                            failure_threshold=3,
                            timeout_seconds=3,
                        ),
                    )
                ],
            ),
            # The service must not start before it may read its secrets, nor before each has
            # a version: its revision reads `latest` as it starts, and nothing else orders it
            # after the DSN's version (which waits for the database, its user and the pooler).
            opts=child_options(
                self, opts, *self.secret_readers, *(v.version for v in args.secrets.values())
            ),
        )
        self.invokers = [
            gcp.cloudrunv2.ServiceIamMember(
                f"{name}-invoker-{i}",
                project=args.project,
                location=args.region,
                name=self.service.name,
                role="roles/run.invoker",
                member=member,
                opts=child,
            )
            for i, member in enumerate(s.invokers)
        ]
        self.uri = self.service.uri
        self.register_outputs(
            {
                "uri": self.uri,
                "service_account": self.account.email,
                "name": self.service.name,
            }
        )
