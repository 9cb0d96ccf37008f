"""The VPC: a subnet for Cloud Run's Direct VPC egress and private services access."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from bulwark.cloud.options import child_options

FLOW_LOGS = gcp.compute.SubnetworkLogConfigArgs(
    aggregation_interval="INTERVAL_5_SEC",
    flow_sampling=0.5,
    metadata="INCLUDE_ALL_METADATA",
)


@dataclass(frozen=True)
class NetworkArgs:
    """+ base_name: prefix of resource names; + subnet_cidr: Cloud Run's subnet;
    + services_range_prefix: size of the private services access range;
    + flow_logs: VPC flow logs on the subnet."""

    project: str
    region: str
    base_name: str
    subnet_cidr: str
    services_range_prefix: int
    flow_logs: bool


class Network(pulumi.ComponentResource):
    """A custom-mode VPC, the Cloud Run subnet, and the peering Cloud SQL and Memorystore use.

    Cloud SQL and Memorystore get private IPs from a reserved range (GlobalAddress with
    purpose VPC_PEERING) peered through servicenetworking; nothing here has a public address.
    """

    def __init__(
        self, name: str, args: NetworkArgs, *, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("bulwark:network:Network", name, None, opts)
        child = child_options(self, opts)
        self.vpc = gcp.compute.Network(
            f"{name}-vpc",
            project=args.project,
            name=f"{args.base_name}-vpc",
            # Custom mode: no subnet in every region with ranges nobody chose.
            auto_create_subnetworks=False,
            routing_mode="REGIONAL",
            opts=child,
        )
        self.subnet = gcp.compute.Subnetwork(
            f"{name}-run",
            project=args.project,
            name=f"{args.base_name}-run",
            region=args.region,
            network=self.vpc.id,
            ip_cidr_range=args.subnet_cidr,
            # Instances without public IPs still reach Google APIs.
            private_ip_google_access=True,
            log_config=FLOW_LOGS if args.flow_logs else None,
            opts=child,
        )
        self.services_range = gcp.compute.GlobalAddress(
            f"{name}-services-range",
            project=args.project,
            name=f"{args.base_name}-services",
            purpose="VPC_PEERING",
            address_type="INTERNAL",
            prefix_length=args.services_range_prefix,
            network=self.vpc.id,
            opts=child,
        )
        self.peering = gcp.servicenetworking.Connection(
            f"{name}-services-peering",
            network=self.vpc.id,
            service="servicenetworking.googleapis.com",
            reserved_peering_ranges=[self.services_range.name],
            # Cloud SQL keeps the peering busy for days after an instance is deleted;
            # abandoning it lets `pulumi destroy` finish instead of failing.
            deletion_policy="ABANDON",
            opts=child,
        )
        self.register_outputs(
            {
                "network_id": self.vpc.id,
                "subnet_id": self.subnet.id,
                "subnet_cidr": self.subnet.ip_cidr_range,
                "services_range": self.services_range.name,
            }
        )
