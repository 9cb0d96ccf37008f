"""`bulwark plan`: run the Pulumi program under mocks and return what it would declare.

No cloud credentials, no Pulumi CLI, no network: the stack file is read as Pulumi would hand it
to the program, the same `platform.build` runs against Pulumi's mock monitor, and every
resource registration is recorded.

The result is also what the offline policy audit consumes (`planned_resources`). Each
`PlannedResource` carries the type token, logical name, URN, parent URN and the inputs as the
engine and CrossGuard see them: **camelCase keys** (`settings.ipConfiguration.ipv4Enabled`),
integral numbers as int, and every secret value replaced by the string `[secret]`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import struct_pb2
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.proto import resource_pb2

from bulwark.cloud.platform import build, settings_from_config
from bulwark.settings.cloud import CloudSettings, read_stack_config, stack_file

REDACTED = "[secret]"
PROJECT = "bulwark"
MOCK_PROJECT_NUMBER = "123456789012"
STACK_TYPE = "pulumi:pulumi:Stack"


@dataclass(frozen=True)
class PlannedResource:
    """One resource the program declares. `inputs` use camelCase keys; secrets are `[secret]`."""

    type: str
    name: str
    urn: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]
    dependencies: tuple[str, ...] = ()

    def get(self, path: str) -> Any:
        """The input at a dotted camelCase path (`settings.ipConfiguration.sslMode`), or None;
        a number selects a list item (`template.containers.0.image`)."""
        value: Any = self.inputs
        for part in path.split("."):
            if isinstance(value, dict):
                value = value.get(part)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return None
        return value

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "name": self.name,
            "urn": self.urn,
            "parent": self.parent,
            "custom": self.custom,
            "inputs": self.inputs,
            "dependencies": list(self.dependencies),
        }


@dataclass(frozen=True)
class Plan:
    """A stack's resources and outputs under mocks. Secret outputs hold `[secret]`."""

    stack: str
    settings: CloudSettings
    resources: tuple[PlannedResource, ...]
    outputs: dict[str, Any]
    secret_outputs: frozenset[str]
    unknown_outputs: frozenset[str] = field(default_factory=frozenset)

    def of_type(self, type_token: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_token]

    def one(self, type_token: str, name: str | None = None) -> PlannedResource:
        """The single resource of a type (and name); raises LookupError otherwise."""
        found = [r for r in self.of_type(type_token) if name is None or r.name == name]
        if len(found) != 1:
            raise LookupError(f"{len(found)} resources of {type_token} named {name or '*'}")
        return found[0]

    def children(self, parent: str | None) -> list[PlannedResource]:
        return sorted((r for r in self.resources if r.parent == parent), key=lambda r: r.name)

    def walk(self) -> Iterator[tuple[int, PlannedResource]]:
        """Resources depth-first from the stack's top-level components, with their depth."""
        urns = {r.urn for r in self.resources}
        roots = [r for r in self.resources if r.parent not in urns]

        def visit(res: PlannedResource, depth: int) -> Iterator[tuple[int, PlannedResource]]:
            yield depth, res
            for kid in self.children(res.urn):
                yield from visit(kid, depth + 1)

        for root in sorted(roots, key=lambda r: r.name):
            yield from visit(root, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "project": self.settings.project,
            "region": self.settings.region,
            "environment": self.settings.environment,
            "resources": [r.as_dict() for r in self.resources],
            "outputs": self.outputs,
            "secret_outputs": sorted(self.secret_outputs),
            "budget": self.settings.budget.as_dict(),
        }


# ----------------------------------------------------------------------------- mocks


def _scrub(value: Any) -> Any:
    """Secrets to `[secret]`, integral floats (protobuf numbers) to int, recursively."""
    if rpc.is_rpc_secret(value):
        return REDACTED
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _account(project: str, inputs: dict[str, Any]) -> dict[str, Any]:
    email = f"{inputs['accountId']}@{project}.iam.gserviceaccount.com"
    return {
        "email": email,
        "name": f"projects/{project}/serviceAccounts/{email}",
        "member": f"serviceAccount:{email}",
    }


_MOCK_CA = [{"cert": "-----BEGIN CERTIFICATE-----\nMOCK\n"}]
_POOLS = f"projects/{MOCK_PROJECT_NUMBER}/locations/global/workloadIdentityPools"

# Outputs GCP would compute, with plausible fake values so downstream Outputs resolve.
# Nothing here is a real secret: the password and AUTH string are fixed markers, and they are
# marked secret exactly where the providers mark them (additionalSecretOutputs).
# Each entry: (project, region, name, inputs) -> outputs.
_COMPUTED: dict[str, Callable[[str, str, str, dict[str, Any]], dict[str, Any]]] = {
    "gcp:serviceaccount/account:Account": lambda p, r, n, i: _account(p, i),
    "gcp:sql/databaseInstance:DatabaseInstance": lambda p, r, n, i: {
        "privateIpAddress": "10.20.0.3",
        "connectionName": f"{p}:{r}:{n}",
        "serverCaCerts": _MOCK_CA,
    },
    "gcp:redis/instance:Instance": lambda p, r, n, i: {
        "host": "10.20.1.4",
        "port": 6378,
        "authString": "mock-redis-auth-string",
        "serverCaCerts": _MOCK_CA,
    },
    "gcp:compute/instance:Instance": lambda p, r, n, i: {
        "networkInterfaces": [
            dict(nic, networkIp="10.8.1.2") for nic in i.get("networkInterfaces", [])
        ]
    },
    "gcp:iam/workloadIdentityPool:WorkloadIdentityPool": lambda p, r, n, i: {
        "name": f"{_POOLS}/{i['workloadIdentityPoolId']}"
    },
    "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider": lambda p, r, n, i: {
        "name": f"{_POOLS}/{i['workloadIdentityPoolId']}/providers/"
        f"{i['workloadIdentityPoolProviderId']}"
    },
    "gcp:cloudrunv2/service:Service": lambda p, r, n, i: {"uri": f"https://{n}-mock.{r}.run.app"},
    "gcp:secretmanager/secret:Secret": lambda p, r, n, i: {
        "name": f"projects/{MOCK_PROJECT_NUMBER}/secrets/{i['secretId']}"
    },
    "gcp:secretmanager/secretVersion:SecretVersion": lambda p, r, n, i: {"version": "1"},
    "random:index/randomPassword:RandomPassword": lambda p, r, n, i: {
        "result": "mock-generated-password"
    },
}


def _computed(typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    compute = _COMPUTED.get(typ)
    if compute is None:
        return {}
    project = inputs.get("project", "mock-project")
    region = inputs.get("region") or inputs.get("location") or "mock-region"
    return compute(project, region, inputs.get("name", name), inputs)


def _resource_id(typ: str, name: str, inputs: dict[str, Any]) -> str:
    project = inputs.get("project", "mock-project")
    rname = inputs.get("name", name)
    if typ == "gcp:compute/network:Network":
        return f"projects/{project}/global/networks/{rname}"
    if typ == "gcp:compute/subnetwork:Subnetwork":
        return f"projects/{project}/regions/{inputs.get('region')}/subnetworks/{rname}"
    if typ == "gcp:secretmanager/secret:Secret":
        return f"projects/{project}/secrets/{inputs.get('secretId')}"
    return f"{name}-id"


class _Mocks(pulumi.runtime.Mocks):
    """State = inputs + computed outputs; provider-declared secret outputs stay secret."""

    def __init__(self) -> None:
        self.local = threading.local()

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        state.update(_computed(args.typ, args.name, args.inputs))
        # The engine marks a resource's additionalSecretOutputs secret; the mock monitor does
        # not, so do it here (the monitor passes them on this thread).
        for key in getattr(self.local, "secret_outputs", ()):
            if key in state:
                state[key] = rpc.wrap_rpc_secret(rpc.unwrap_rpc_secret(state[key]))
        return _resource_id(args.typ, args.name, args.inputs), state

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        # The program makes no invokes; one appearing would be a change worth noticing.
        raise NotImplementedError(f"bulwark plan does not mock invoke {args.token}")


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, also recording every registration with its parent and inputs."""

    def __init__(self, mocks: _Mocks) -> None:
        super().__init__(mocks)
        self._mocks = mocks
        self.recorded: list[PlannedResource] = []
        self._lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:
        """MockMonitor.RegisterResource without its nested event-loop pumping.

        The base class serialises the mock's state with `_sync_await` from the executor thread
        the SDK calls it on. When gevent has patched threading (pyinfra's CLI module does so on
        import, and the bulwark CLI imports it), that "thread" is a greenlet on the main thread
        and the nested pump re-enters the running loop. The state here is plain data, so a
        protobuf Struct takes it directly, with no event loop at all.
        """
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == STACK_TYPE:
            return resource_pb2.RegisterResourceResponse(urn=urn)
        raw_inputs = rpc.deserialize_properties(request.object)
        self._mocks.local.secret_outputs = tuple(request.additionalSecretOutputs)
        try:
            resource_id, state = self._mocks.new_resource(
                pulumi.runtime.MockResourceArgs(
                    typ=request.type,
                    name=request.name,
                    inputs=raw_inputs,
                    provider=request.provider,
                    resource_id=request.importId,
                    custom=request.custom or False,
                )
            )
        finally:
            self._mocks.local.secret_outputs = ()
        resource_id = resource_id or f"{request.name}-id"
        state_proto = struct_pb2.Struct()
        state_proto.update(state)
        self.resources[urn] = pulumi_mocks.MockMonitor.ResourceRegistration(urn, resource_id, state)
        if not request.type.startswith("pulumi:providers:"):
            parent = request.parent or None
            if parent is not None and parent.split("::")[-2].endswith(STACK_TYPE):
                parent = None
            planned = PlannedResource(
                request.type,
                request.name,
                urn,
                parent,
                bool(request.custom),
                _scrub(raw_inputs),
                tuple(sorted(request.dependencies)),
            )
            with self._lock:
                self.recorded.append(planned)
        return resource_pb2.RegisterResourceResponse(urn=urn, id=resource_id, object=state_proto)


# ----------------------------------------------------------------------------- running


def pulumi_config(config: Mapping[str, object]) -> dict[str, str]:
    """Stack-file values as the Pulumi CLI hands them to a program: strings, objects as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def use_mocks(stack: str = "test") -> RecordingMonitor:
    """Point the Pulumi runtime at bulwark's mocks with a fresh root stack; the returned
    monitor's `recorded` lists every resource declared from now on."""
    mocks = _Mocks()
    monitor = RecordingMonitor(mocks)
    pulumi_settings.ROOT.set(None)  # a fresh root Stack for every run in this process
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    return monitor


@dataclass(frozen=True)
class MockRun:
    """What a program declared under mocks: resources, and its outputs (secrets redacted)."""

    resources: tuple[PlannedResource, ...]
    outputs: dict[str, Any]
    secret_outputs: frozenset[str]
    unknown_outputs: frozenset[str]


def run_program(
    program: Callable[[], Mapping[str, pulumi.Input[object]]], stack: str = "test"
) -> MockRun:
    """Run `program` (which declares resources and returns outputs) under bulwark's mocks.

    Each run starts from a fresh root stack, so runs can follow each other in one process.
    """
    monitor = use_mocks(stack)
    resolved: dict[str, Any] = {}
    secret: set[str] = set()
    unknown: set[str] = set()

    async def resolve(outputs: Mapping[str, pulumi.Input[object]]) -> None:
        for key, value in outputs.items():
            output = pulumi.Output.from_input(value)
            result = await output.future()
            if await output.is_secret():
                secret.add(key)
                result = REDACTED
            elif result is None:
                unknown.add(key)
            resolved[key] = _scrub(result)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> pulumi.Output[None]:
        return pulumi.Output.from_input(resolve(program()))

    run()
    return MockRun(tuple(monitor.recorded), resolved, frozenset(secret), frozenset(unknown))


def run_plan(stack: str, stacks_dir: Path = Path("stacks")) -> Plan:
    """Run the program of `stacks/Pulumi.<stack>.yaml` under mocks; raise ConfigError first if
    the config is invalid (before any resource is declared)."""
    path = stack_file(stack, stacks_dir)
    config = read_stack_config(path)
    pulumi.runtime.set_all_config(pulumi_config(config), [])
    settings = settings_from_config(str(path))
    run = run_program(lambda: build(settings), stack)
    return Plan(
        stack=stack,
        settings=settings,
        resources=run.resources,
        outputs=run.outputs,
        secret_outputs=run.secret_outputs,
        unknown_outputs=run.unknown_outputs,
    )


def planned_resources(stack: str, stacks_dir: Path = Path("stacks")) -> list[PlannedResource]:
    """The resources of a stack as the offline policy audit reads them (see module docs)."""
    return list(run_plan(stack, stacks_dir).resources)


# ----------------------------------------------------------------------------- display

# The properties that matter, per type token: what a reviewer (and the policy pack) looks at.
HIGHLIGHTS: dict[str, tuple[str, ...]] = {
    "gcp:projects/service:Service": ("service",),
    "gcp:compute/network:Network": ("autoCreateSubnetworks",),
    "gcp:compute/subnetwork:Subnetwork": ("ipCidrRange", "privateIpGoogleAccess", "logConfig"),
    "gcp:compute/globalAddress:GlobalAddress": ("purpose", "prefixLength"),
    "gcp:servicenetworking/connection:Connection": ("service",),
    "gcp:sql/databaseInstance:DatabaseInstance": (
        "databaseVersion",
        "settings.edition",
        "settings.tier",
        "settings.availabilityType",
        "settings.ipConfiguration.ipv4Enabled",
        "settings.ipConfiguration.sslMode",
        "settings.backupConfiguration.enabled",
        "settings.backupConfiguration.pointInTimeRecoveryEnabled",
        "deletionProtection",
        "settings.deletionProtectionEnabled",
        "settings.connectionPoolConfigs",
    ),
    "gcp:sql/user:User": ("name", "password"),
    "gcp:secretmanager/secret:Secret": ("secretId",),
    "gcp:secretmanager/secretVersion:SecretVersion": ("secretData",),
    "gcp:secretmanager/secretIamMember:SecretIamMember": ("role", "member"),
    "gcp:redis/instance:Instance": (
        "tier",
        "authEnabled",
        "transitEncryptionMode",
        "connectMode",
    ),
    "gcp:compute/instance:Instance": (
        "machineType",
        "networkInterfaces.0.accessConfigs",
        "shieldedInstanceConfig.enableSecureBoot",
        "metadata.enable-oslogin",
    ),
    "gcp:compute/firewall:Firewall": ("allows", "sourceRanges"),
    "gcp:cloudrunv2/service:Service": (
        "ingress",
        "template.containers.0.image",
        "template.serviceAccount",
        "template.scaling.maxInstanceCount",
        "template.maxInstanceRequestConcurrency",
        "template.vpcAccess.egress",
        "deletionProtection",
    ),
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": ("role", "member"),
    "gcp:serviceaccount/account:Account": ("accountId",),
    "gcp:projects/iAMMember:IAMMember": ("role",),
    "gcp:serviceaccount/iAMMember:IAMMember": ("role", "member"),
    "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider": (
        "attributeCondition",
        "oidc.issuerUri",
    ),
}


def highlights(resource: PlannedResource) -> list[tuple[str, str]]:
    """(path, value) pairs of the properties that matter for this resource, set ones only."""
    found = []
    for path in HIGHLIGHTS.get(resource.type, ()):
        value = resource.get(path)
        if value is None:
            continue
        found.append((path, value if isinstance(value, str) else json.dumps(value)))
    return found
