"""The VPC, its subnets and firewall, and the PgBouncer VM (pgbouncer stacks)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from bulwark.policy.rules.base import RULES, Resource
from bulwark.policy.rules.types import COMPUTE_INSTANCE, FIREWALL, NETWORK, SUBNETWORK

WORLD = ("0.0.0.0/0", "::/0")
DEFAULT_COMPUTE_SA = re.compile(r"-compute@developer\.gserviceaccount\.com$")


def _true(value: object) -> bool:
    return str(value).upper() == "TRUE"


@RULES.resource(
    "network-custom-subnets",
    types=NETWORK,
    title="The VPC has custom subnets only",
    severity="medium",
    family="network",
    rationale="Auto mode creates a subnet in every region with ranges nobody chose; the "
    "default network also brings permissive firewall rules.",
    remediation="Set autoCreateSubnetworks to false and declare each subnet.",
    cis="3.1",
)
def network_custom_subnets(res: Resource) -> Sequence[str]:
    if res.get("autoCreateSubnetworks") is False:
        return []
    return ["autoCreateSubnetworks is not false: set it to false and declare the subnets"]


@RULES.resource(
    "subnet-flow-logs",
    types=SUBNETWORK,
    title="Subnets record VPC flow logs",
    severity="medium",
    family="network",
    rationale="Flow logs are how an incident responder sees which address talked to which.",
    remediation="Set logConfig (bulwark:network.flow_logs: true).",
    cis="3.8",
    checkov="CKV_GCP_26",
)
def subnet_flow_logs(res: Resource) -> Sequence[str]:
    if isinstance(res.get("logConfig"), Mapping):
        return []
    return ["logConfig is unset: enable flow logs (bulwark:network.flow_logs: true)"]


@RULES.resource(
    "subnet-private-google-access",
    types=SUBNETWORK,
    title="Subnets reach Google APIs privately",
    severity="low",
    family="network",
    rationale="Hosts without external addresses still reach Secret Manager and logging, without "
    "a public path.",
    remediation="Set privateIpGoogleAccess to true.",
    checkov="CKV_GCP_74",
    enforcement="advisory",
)
def subnet_private_google_access(res: Resource) -> Sequence[str]:
    if res.get("privateIpGoogleAccess") is True:
        return []
    return ["privateIpGoogleAccess is not true: set it to true"]


def _world_ingress(res: Resource, port: int) -> bool:
    if res.get("direction") not in (None, "INGRESS"):
        return False
    if not any(r in WORLD for r in res.items("sourceRanges")):
        return False
    for rule in res.items("allows"):
        if not isinstance(rule, Mapping) or rule.get("protocol") not in ("tcp", "all"):
            continue
        ports = rule.get("ports") or []
        if not ports:
            return True
        for item in ports:
            low, _, high = str(item).partition("-")
            if int(low) <= port <= int(high or low):
                return True
    return False


def _open_port_rule(rule_id: str, port: int, service: str, cis: str, checkov: str) -> None:
    def check(res: Resource) -> Sequence[str]:
        if _world_ingress(res, port):
            return [
                f"ingress from {', '.join(res.items('sourceRanges'))} reaches {service} "
                f"port {port}: narrow sourceRanges (IAP is 35.235.240.0/20)"
            ]
        return []

    check.__name__ = rule_id.replace("-", "_")
    RULES.resource(
        rule_id,
        types=FIREWALL,
        title=f"No firewall rule opens {service} ({port}) to the internet",
        severity="critical",
        family="network",
        rationale=f"{service} open to 0.0.0.0/0 is scanned and brute-forced within minutes.",
        remediation="Restrict sourceRanges to known ranges (for SSH: IAP's 35.235.240.0/20).",
        cis=cis,
        checkov=checkov,
    )(check)


_open_port_rule("firewall-no-open-ssh", 22, "SSH", "3.6", "CKV_GCP_2")
_open_port_rule("firewall-no-open-rdp", 3389, "RDP", "3.7", "CKV_GCP_3")


@RULES.resource(
    "vm-no-public-ip",
    types=COMPUTE_INSTANCE,
    title="VMs have no external IP",
    severity="high",
    family="compute",
    rationale="An external address puts every listening port one firewall mistake away from "
    "the internet.",
    remediation="Remove networkInterfaces[].accessConfigs; reach the VM through IAP and give it "
    "Cloud NAT for outbound traffic.",
    cis="4.9",
    checkov="CKV_GCP_40",
)
def vm_no_public_ip(res: Resource) -> Sequence[str]:
    return [
        f"networkInterfaces[{i}] has accessConfigs (an external IP): remove them"
        for i, nic in enumerate(res.items("networkInterfaces"))
        if isinstance(nic, Mapping) and nic.get("accessConfigs")
    ]


@RULES.resource(
    "vm-shielded",
    types=COMPUTE_INSTANCE,
    title="VMs boot as Shielded VMs",
    severity="medium",
    family="compute",
    rationale="Secure Boot, vTPM and integrity monitoring stop and detect boot-level rootkits.",
    remediation="Set shieldedInstanceConfig.enableSecureBoot, enableVtpm and "
    "enableIntegrityMonitoring to true.",
    cis="4.8",
    checkov="CKV_GCP_39",
)
def vm_shielded(res: Resource) -> Sequence[str]:
    return [
        f"shieldedInstanceConfig.{key} is not true: set it to true"
        for key in ("enableSecureBoot", "enableVtpm", "enableIntegrityMonitoring")
        if res.get(f"shieldedInstanceConfig.{key}") is not True
    ]


@RULES.resource(
    "vm-os-login",
    types=COMPUTE_INSTANCE,
    title="VMs use OS Login and ignore project-wide SSH keys",
    severity="high",
    family="compute",
    rationale="OS Login ties SSH access to IAM (and its removal to leaving the organisation); a "
    "project-wide key opens every VM.",
    remediation="Set metadata enable-oslogin and block-project-ssh-keys to TRUE.",
    cis="4.3, 4.4",
    checkov="CKV_GCP_32",
)
def vm_os_login(res: Resource) -> Sequence[str]:
    return [
        f"metadata {key} is not TRUE: set it to TRUE"
        for key in ("enable-oslogin", "block-project-ssh-keys")
        if not _true(res.get(f"metadata.{key}"))
    ]


@RULES.resource(
    "vm-serial-port-disabled",
    types=COMPUTE_INSTANCE,
    title="VMs keep the interactive serial console off",
    severity="medium",
    family="compute",
    rationale="The serial console accepts logins from any address and no firewall applies.",
    remediation="Remove metadata serial-port-enable or set it to FALSE.",
    cis="4.5",
    checkov="CKV_GCP_35",
)
def vm_serial_port_disabled(res: Resource) -> Sequence[str]:
    if _true(res.get("metadata.serial-port-enable")):
        return ["metadata serial-port-enable is TRUE: set it to FALSE"]
    return []


@RULES.resource(
    "vm-no-ip-forwarding",
    types=COMPUTE_INSTANCE,
    title="VMs do not forward IP packets",
    severity="medium",
    family="compute",
    rationale="A forwarding VM can route traffic around the firewall.",
    remediation="Set canIpForward to false.",
    cis="4.6",
    checkov="CKV_GCP_36",
)
def vm_no_ip_forwarding(res: Resource) -> Sequence[str]:
    if res.get("canIpForward") is True:
        return ["canIpForward is true: set it to false"]
    return []


@RULES.resource(
    "vm-dedicated-service-account",
    types=COMPUTE_INSTANCE,
    title="VMs run as a dedicated service account",
    severity="high",
    family="compute",
    rationale="The Compute Engine default account commonly holds Editor on the project.",
    remediation="Set serviceAccount.email to an account created for this VM.",
    cis="4.1",
    checkov="CKV_GCP_30",
)
def vm_dedicated_service_account(res: Resource) -> Sequence[str]:
    email = res.get("serviceAccount.email")
    if not email or DEFAULT_COMPUTE_SA.search(str(email)):
        return [
            f"serviceAccount.email is {email or 'unset (the default account)'}: use a "
            "dedicated service account"
        ]
    return []
