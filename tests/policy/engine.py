"""The policy pack as the Pulumi engine runs it, without the engine or a network.

`policies/__main__.py` is executed as the CLI's policy host runs it: it builds the real
`PolicyPack`, whose constructor starts a gRPC server and serves forever. Here the server is a
stand-in that hands over the servicer the pack registered (pulumi_policy's own
`_PolicyAnalyzerServicer`), and the serving loop ends at once. Requests are then built as the
engine builds them: resource properties as protobuf `Struct`s (every number a float), the pack
config per policy as `PolicyConfig` messages, unknown values as the engine's sentinels.
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pulumi_policy.policy as sdk
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2

from bulwark.policy.rules import Resource
from bulwark.policy.rules.values import unwrap

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "policies" / "__main__.py"
# The engine's stand-in for a value it cannot know during preview (a string's).
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
LEVELS = {
    "advisory": analyzer_pb2.ADVISORY,
    "mandatory": analyzer_pb2.MANDATORY,
    "disabled": analyzer_pb2.DISABLED,
}
LEVEL_NAMES = {v: k for k, v in LEVELS.items()}


@dataclass(frozen=True)
class Diagnostic:
    policy: str
    level: str  # mandatory, advisory
    message: str
    urn: str


class _Server:
    def add_insecure_port(self, address: str) -> int:
        return 0

    def start(self) -> None:
        pass

    def stop(self, grace: object) -> None:
        pass


def _struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    json_format.ParseDict(json.loads(json.dumps(unwrap(value))), message)
    return message


class Engine:
    """The pack's analyzer, called as the engine calls it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        found: dict[str, Any] = {}

        def keep(servicer: Any, server: object) -> None:
            found["servicer"] = servicer

        def stop_serving(seconds: float) -> None:
            raise KeyboardInterrupt  # PolicyPack stops its server on it and returns

        with monkeypatch.context() as m:
            # What PolicyPack() reaches for to serve: a server, its registration, the port it
            # prints for the engine, and the sleep it serves in.
            m.setattr(sdk, "grpc", SimpleNamespace(server=lambda *a, **k: _Server()))
            m.setattr(
                sdk, "analyzer_pb2_grpc", SimpleNamespace(add_AnalyzerServicer_to_server=keep)
            )
            m.setattr(
                sdk,
                "sys",
                SimpleNamespace(stdout=SimpleNamespace(buffer=SimpleNamespace(write=len))),
            )
            m.setattr(sdk, "time", SimpleNamespace(sleep=stop_serving))
            runpy.run_path(str(PACK), run_name="__main__")
        self.servicer = found["servicer"]

    def info(self) -> analyzer_pb2.AnalyzerInfo:
        info: analyzer_pb2.AnalyzerInfo = self.servicer.GetAnalyzerInfo(empty_pb2.Empty(), None)
        return info

    def configure(self, path: Path) -> None:
        """`--policy-pack-config path`: each entry's enforcement level and properties."""
        request = analyzer_pb2.ConfigureAnalyzerRequest()
        for name, entry in json.loads(path.read_text()).items():
            level = entry if isinstance(entry, str) else entry.get("enforcementLevel", "")
            props = (
                {k: v for k, v in entry.items() if k != "enforcementLevel"}
                if isinstance(entry, dict)
                else {}
            )
            config = request.policyConfig[name]
            if level:
                config.enforcementLevel = LEVELS[level]
            config.properties.CopyFrom(_struct(props))
        self.servicer.Configure(request, None)

    def analyze(self, res: Resource) -> list[Diagnostic]:
        request = analyzer_pb2.AnalyzeRequest(
            type=res.type, properties=_struct(res.props), urn=res.urn, name=res.name
        )
        return self._diagnostics(self.servicer.Analyze(request, None))

    def analyze_stack(self, resources: Iterable[Resource]) -> list[Diagnostic]:
        request = analyzer_pb2.AnalyzeStackRequest(
            resources=[
                analyzer_pb2.AnalyzerResource(
                    type=r.type, properties=_struct(r.props), urn=r.urn, name=r.name
                )
                for r in resources
            ]
        )
        return self._diagnostics(self.servicer.AnalyzeStack(request, None))

    @staticmethod
    def _diagnostics(response: analyzer_pb2.AnalyzeResponse) -> list[Diagnostic]:
        return [
            Diagnostic(d.policyName, LEVEL_NAMES[d.enforcementLevel], d.message, d.urn)
            for d in response.diagnostics
        ]


def with_unknown(res: Resource, path: str) -> Resource:
    """`res` with the property at the dotted `path` unknown, as during a preview."""
    props = unwrap(res.props)
    *parents, last = path.split(".")
    node: Any = props
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = UNKNOWN
    else:
        node[last] = UNKNOWN
    return Resource(res.type, res.name, res.urn, props)
