"""Cloud Run v2: what runs (pinned image), as whom (dedicated account), with which secrets
(Secret Manager refs only), where it talks (private egress), and how far it scales."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from bulwark.policy.rules.base import RULES, Resource
from bulwark.policy.rules.types import RUN_IAM_BINDING, RUN_IAM_MEMBER, RUN_SERVICE
from bulwark.secretscan import secret_setting

DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")
DEFAULT_COMPUTE_SA = re.compile(r"-compute@developer\.gserviceaccount\.com$")
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
EGRESS = ("PRIVATE_RANGES_ONLY", "ALL_TRAFFIC")


def _containers(res: Resource) -> list[Mapping[str, Any]]:
    return [c for c in res.items("template.containers") if isinstance(c, Mapping)]


@RULES.resource(
    "run-image-pinned-by-digest",
    types=RUN_SERVICE,
    title="Cloud Run images are pinned by digest",
    severity="high",
    family="service",
    rationale="A tag can be moved to other bytes after review; a digest names exactly what "
    "was built, scanned and approved.",
    remediation="Use REGISTRY/REPO@sha256:<64 hex> for every container image "
    "(`docker buildx imagetools inspect` prints it).",
)
def run_image_pinned_by_digest(res: Resource) -> Sequence[str]:
    return [
        f"container {i} image {c.get('image')!s} is not pinned by digest: use "
        "REGISTRY/REPO@sha256:<64 hex>"
        for i, c in enumerate(_containers(res))
        if not DIGEST_RE.search(str(c.get("image") or ""))
    ] or ([] if _containers(res) else ["template.containers is empty: declare the app container"])


@RULES.resource(
    "run-dedicated-service-account",
    types=RUN_SERVICE,
    title="Cloud Run runs as its own service account",
    severity="high",
    family="service",
    rationale="Unset, Cloud Run uses the Compute Engine default account, which holds Editor "
    "on the project in many organisations.",
    remediation="Set template.serviceAccount to a dedicated account created for this service.",
    cis="4.1",
)
def run_dedicated_service_account(res: Resource) -> Sequence[str]:
    account = res.get("template.serviceAccount")
    if not account:
        return [
            "template.serviceAccount is unset (the default compute account): set a "
            "dedicated service account"
        ]
    if DEFAULT_COMPUTE_SA.search(str(account)):
        return [
            f"template.serviceAccount is the default compute account {account}: create "
            "and use a dedicated one"
        ]
    return []


@RULES.resource(
    "run-secrets-from-secret-manager",
    types=RUN_SERVICE,
    title="Secrets reach Cloud Run only as Secret Manager references",
    severity="critical",
    family="secrets",
    rationale="A plain env value is readable by anyone who can view the service and is kept "
    "in the revision history forever.",
    remediation="Store the value in Secret Manager and inject it with "
    "envs[].valueSource.secretKeyRef.",
)
def run_secrets_from_secret_manager(res: Resource) -> Sequence[str]:
    found = []
    for container in _containers(res):
        envs = container.get("envs")
        for env in envs or ():
            if not isinstance(env, Mapping):
                continue
            name = str(env.get("name"))
            # The value is never echoed: it may be the secret itself.
            if why := secret_setting(name, env.get("value")):
                found.append(
                    f"env {name} has a plain value and {why}: move it to Secret Manager and "
                    "use valueSource.secretKeyRef"
                )
    return found


@RULES.resource(
    "run-private-egress",
    types=RUN_SERVICE,
    title="Cloud Run reaches the VPC by Direct VPC egress",
    severity="high",
    family="service",
    rationale="The database and Redis have private addresses only; without VPC egress the app "
    "cannot reach them, and a workaround would be a public endpoint.",
    remediation="Set template.vpcAccess.networkInterfaces (or a connector) and "
    "template.vpcAccess.egress to PRIVATE_RANGES_ONLY or ALL_TRAFFIC.",
)
def run_private_egress(res: Resource) -> Sequence[str]:
    found = []
    if not (
        res.get("template.vpcAccess.networkInterfaces") or res.get("template.vpcAccess.connector")
    ):
        found.append(
            "template.vpcAccess has no networkInterfaces or connector: attach the "
            "service to the VPC subnet"
        )
    if res.get("template.vpcAccess.egress") not in EGRESS:
        found.append(
            f"template.vpcAccess.egress is {res.get('template.vpcAccess.egress') or 'unset'}: "
            "set PRIVATE_RANGES_ONLY (or ALL_TRAFFIC)"
        )
    return found


@RULES.resource(
    "run-bounded-scaling",
    types=RUN_SERVICE,
    title="Cloud Run scaling and per-instance concurrency are bounded",
    severity="high",
    family="service",
    rationale="Unbounded instances multiply database connections past what the pooler and "
    "Postgres accept, and the bill with them.",
    remediation="Set template.scaling.maxInstanceCount (bulwark:service.max_instances) and "
    "template.maxInstanceRequestConcurrency.",
)
def run_bounded_scaling(res: Resource) -> Sequence[str]:
    found = []
    most = res.get("template.scaling.maxInstanceCount")
    if not isinstance(most, int) or most < 1:
        found.append(
            f"template.scaling.maxInstanceCount is {most or 'unset'}: set an upper bound "
            "the connection budget is sized from"
        )
    if not isinstance(res.get("template.maxInstanceRequestConcurrency"), int):
        found.append("template.maxInstanceRequestConcurrency is unset: set it (e.g. 40)")
    return found


def _probe_rule(rule_id: str, probe: str, what: str, why: str) -> None:
    def check(res: Resource) -> Sequence[str]:
        return [
            f"container {i} has no {probe}: add an HTTP {probe} on the health path"
            for i, c in enumerate(_containers(res))
            if not c.get(probe)
        ]

    check.__name__ = rule_id.replace("-", "_")
    RULES.resource(
        rule_id,
        types=RUN_SERVICE,
        title=f"Cloud Run containers have a {what}",
        severity="medium",
        family="service",
        rationale=why,
        remediation=f"Set template.containers[].{probe} (httpGet on the health path).",
    )(check)


_probe_rule(
    "run-startup-probe",
    "startupProbe",
    "startup probe",
    "Without one, traffic reaches an instance before its pool and migrations are ready.",
)
_probe_rule(
    "run-liveness-probe",
    "livenessProbe",
    "liveness probe",
    "A wedged worker (for example a starved connection pool) is restarted instead of "
    "answering errors until the next deploy.",
)


@RULES.resource(
    "run-resource-limits",
    types=RUN_SERVICE,
    title="Cloud Run containers declare CPU and memory limits",
    severity="low",
    family="service",
    rationale="Explicit limits make the per-instance cost and the worker count deliberate.",
    remediation="Set template.containers[].resources.limits.cpu and .memory.",
    enforcement="advisory",
)
def run_resource_limits(res: Resource) -> Sequence[str]:
    found = []
    for i, c in enumerate(_containers(res)):
        limits = c.get("resources")
        limits = limits.get("limits") if isinstance(limits, Mapping) else None
        for key in ("cpu", "memory"):
            if not isinstance(limits, Mapping) or not limits.get(key):
                found.append(f"container {i} has no resources.limits.{key}: set it")
    return found


@RULES.resource(
    "run-ingress-not-public",
    types=RUN_SERVICE,
    title="Cloud Run ingress is internal or through the load balancer",
    severity="high",
    family="service",
    rationale="INGRESS_TRAFFIC_ALL (the default when unset) accepts requests from the whole "
    "internet and bypasses the load balancer's WAF and TLS policy.",
    remediation="Set ingress to INGRESS_TRAFFIC_INTERNAL_ONLY or "
    "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER.",
)
def run_ingress_not_public(res: Resource) -> Sequence[str]:
    ingress = res.get("ingress")
    if ingress in ("INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"):
        return []
    return [
        f"ingress is {ingress or 'unset (INGRESS_TRAFFIC_ALL)'}: set "
        "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER and front it with a load balancer"
    ]


@RULES.resource(
    "run-invoker-iam-enforced",
    types=RUN_SERVICE,
    title="Cloud Run checks IAM on every request",
    severity="critical",
    family="service",
    rationale="invokerIamDisabled lets anyone who reaches the URL invoke the service, like an "
    "allUsers grant that no IAM review shows.",
    remediation="Remove invokerIamDisabled (or set it to false) and grant roles/run.invoker.",
    checkov="CKV_GCP_102",
)
def run_invoker_iam_enforced(res: Resource) -> Sequence[str]:
    if res.get("invokerIamDisabled") is True:
        return [
            "invokerIamDisabled is true: set it to false and grant roles/run.invoker to "
            "named members"
        ]
    return []


@RULES.resource(
    "run-deletion-protection",
    types=RUN_SERVICE,
    title="Cloud Run service is protected from deletion",
    severity="medium",
    family="service",
    rationale="A deleted service loses its URL, revisions and IAM; protection turns a slip "
    "into an error.",
    remediation="Leave deletionProtection at its default (true) or set it to true.",
)
def run_deletion_protection(res: Resource) -> Sequence[str]:
    if res.get("deletionProtection") is False:
        return ["deletionProtection is false: set it to true (bulwark:service.deletion_protection)"]
    return []


@RULES.resource(
    "run-no-public-invoker",
    types=(RUN_IAM_MEMBER, RUN_IAM_BINDING),
    title="Nobody grants allUsers or allAuthenticatedUsers the invoker role",
    severity="critical",
    family="iam",
    rationale="allUsers as invoker makes the service callable by anyone on the internet.",
    remediation="Grant roles/run.invoker to named members (the load balancer's or a caller's "
    "service account) instead.",
    checkov="CKV_GCP_102",
)
def run_no_public_invoker(res: Resource) -> Sequence[str]:
    members = [res.get("member"), *res.items("members")]
    return [
        f"{member} is granted {res.get('role')}: remove it and grant named members instead"
        for member in members
        if member in PUBLIC_MEMBERS
    ]
