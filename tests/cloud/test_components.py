"""Components built one by one under mocks, the Pulumi entry point, and config refused early."""

from __future__ import annotations

import re
import runpy
import shutil
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from bulwark.cloud import plan as plan_module
from bulwark.cloud.cache import RedisArgs, RedisCache
from bulwark.cloud.plan import (
    REDACTED,
    RecordingMonitor,
    pulumi_config,
    run_plan,
    run_program,
    use_mocks,
)
from bulwark.cloud.platform import build, settings_from_config
from bulwark.cloud.pooler import dsn
from bulwark.cloud.secrets import StoredSecret, StoredSecretArgs
from bulwark.cloud.service import CloudRunArgs, CloudRunService
from bulwark.errors import ConfigError
from bulwark.settings.cloud import CacheSettings, ServiceSettings, read_stack_config

from .conftest import STACKS_DIR

ROOT = STACKS_DIR.parent
IMAGE = "europe-west1-docker.pkg.dev/acme/app/api@sha256:" + "0f" * 32
NETWORK = "projects/acme-test/global/networks/bulwark-test-vpc"


@pytest.fixture
def monitor() -> RecordingMonitor:
    return use_mocks("test")


def placeholder(name: str) -> pulumi.ComponentResource:
    """Something to depend on (stands in for the servicenetworking connection)."""
    return pulumi.ComponentResource("test:placeholder:Placeholder", name)


@pulumi.runtime.test  # type: ignore[untyped-decorator]
def test_stored_secret_keeps_its_value_secret(monitor: RecordingMonitor) -> pulumi.Output[None]:
    stored = StoredSecret(
        "token",
        StoredSecretArgs(project="acme-test", secret_id="bulwark-test-token", value="plain"),
    )

    async def check() -> None:
        assert await stored.version.secret_data.is_secret()
        assert await stored.secret_id.future() == "bulwark-test-token"
        await stored.version.id.future()  # registered by now
        (version,) = [r for r in monitor.recorded if r.name == "token-version"]
        assert version.inputs["secretData"] == REDACTED, "secret sent to the engine in clear"

    return pulumi.Output.from_input(check())


@pulumi.runtime.test  # type: ignore[untyped-decorator]
def test_pooler_dsn_is_secret_even_from_plain_parts(
    monitor: RecordingMonitor,
) -> pulumi.Output[None]:
    url = dsn("app", "not-a-secret-yet", "10.20.0.3", "app")

    async def check() -> None:
        assert await url.is_secret(), "the DSN holds the password: it must be secret"
        value = await url.future()
        assert value == "postgresql://app:not-a-secret-yet@10.20.0.3:6432/app?sslmode=require"

    return pulumi.Output.from_input(check())


@pulumi.runtime.test  # type: ignore[untyped-decorator]
def test_redis_component_turns_on_auth_and_tls(monitor: RecordingMonitor) -> pulumi.Output[None]:
    cache = RedisCache(
        "cache",
        RedisArgs(
            project="acme-test", region="europe-west1", base_name="bulwark-test",
            settings=CacheSettings(), network_id=NETWORK, services_range="bulwark-test-services",
            peering=placeholder("peering"), deletion_protection=True, labels={},
        ),
    )  # fmt: skip

    def check(values: list[Any]) -> None:
        auth, tls, mode, tier = values
        assert auth is True, "Redis AUTH must be on"
        assert tls == "SERVER_AUTHENTICATION", "Redis must require TLS"
        assert mode == "PRIVATE_SERVICE_ACCESS"
        assert tier == "STANDARD_HA", "the default tier keeps a replica"

    i = cache.instance
    return pulumi.Output.all(
        i.auth_enabled, i.transit_encryption_mode, i.connect_mode, i.tier
    ).apply(check)


@pulumi.runtime.test  # type: ignore[untyped-decorator]
def test_cloud_run_defaults_are_internal_with_no_invoker(
    monitor: RecordingMonitor,
) -> pulumi.Output[None]:
    secret = StoredSecret(
        "db", StoredSecretArgs(project="acme-test", secret_id="bulwark-test-db", value="x")
    )
    service = CloudRunService(
        "service",
        CloudRunArgs(
            project="acme-test", region="europe-west1", base_name="bulwark-test",
            settings=ServiceSettings(image=IMAGE), network_id=NETWORK,
            subnet_id="projects/acme-test/regions/europe-west1/subnetworks/bulwark-test-run",
            secrets={"DATABASE_URL": secret}, env={}, labels={},
        ),
    )  # fmt: skip

    def check(values: list[Any]) -> None:
        ingress, protected, account = values
        assert ingress == "INGRESS_TRAFFIC_INTERNAL_ONLY"
        assert protected is True
        assert account == "bulwark-test-run@acme-test.iam.gserviceaccount.com"
        assert service.invokers == [], "no invoker binding unless settings name one"

    s = service.service
    return pulumi.Output.all(s.ingress, s.deletion_protection, s.template.service_account).apply(
        check
    )


def test_main_py_is_wiring_that_exports_every_output() -> None:
    config = read_stack_config(STACKS_DIR / "Pulumi.prod.yaml")
    pulumi.runtime.set_all_config(pulumi_config(config), [])
    monitor = use_mocks("prod")
    exported: dict[str, bool] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> pulumi.Output[None]:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        stack = pulumi.runtime.get_root_resource()
        assert isinstance(stack, pulumi.runtime.stack.Stack)

        async def collect() -> None:
            for name, value in stack.outputs.items():
                exported[name] = await pulumi.Output.from_input(value).is_secret()

        return pulumi.Output.from_input(collect())

    run()
    assert len(monitor.recorded) > 50
    assert exported["database_url"] is True
    assert exported["service_url"] is False
    assert "ci_workload_identity_provider" in exported


def test_main_py_refuses_bad_config_before_any_resource() -> None:
    config = read_stack_config(STACKS_DIR / "Pulumi.prod.yaml")
    config["bulwark:pooler"] = {"mode": "pgbouncr"}
    pulumi.runtime.set_all_config(pulumi_config(config), [])
    monitor = use_mocks("prod")
    with pytest.raises(
        SystemExit, match=r"^error: stacks/Pulumi\.prod\.yaml: bulwark:pooler\.mode"
    ):
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
    assert monitor.recorded == []


def broken_stack(tmp_path: Path, stack: str, area: str, change: dict[str, Any]) -> Path:
    shutil.copy(STACKS_DIR / f"Pulumi.{stack}.yaml", tmp_path)
    path = tmp_path / f"Pulumi.{stack}.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"][f"bulwark:{area}"].update(change)
    path.write_text(yaml.safe_dump(doc))
    return tmp_path


@pytest.mark.parametrize(
    ("stack", "area", "change", "message"),
    [
        ("dev", "pooler", {"mode": "bouncer"}, "bulwark:pooler.mode: use 'managed' or 'pgbouncer'"),
        ("staging", "service", {"max_instances": 0}, "bulwark:service.max_instances: 0 would stop"),
        ("prod", "service", {"max_instances": 250}, "bulwark:pooler.max_client_connections: "
         "worst case 5000 = (250 instances + 250 rollout surge)"),
        ("prod", "service", {"image": "europe-west1-docker.pkg.dev/acme/app/api:v1.2",
                             "allow_mutable_image": True},
         "bulwark:service.allow_mutable_image: prod runs images pinned by digest only"),
        ("prod", "service", {"image": "europe-west1-docker.pkg.dev/acme/app/api:v1.2"},
         "bulwark:service.image: 'europe-west1-docker.pkg.dev/acme/app/api:v1.2' is not pinned"),
        ("dev", "ci", {"github_repo": "acme/x"}, "bulwark:ci.github_repo: unknown setting"),
    ],
)  # fmt: skip
def test_invalid_stack_config_fails_on_one_line_before_any_resource(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stack: str,
    area: str,
    change: dict[str, Any],
    message: str,
) -> None:
    built: list[object] = []

    def spy(settings: object) -> dict[str, object]:
        built.append(settings)
        return {}

    monkeypatch.setattr(plan_module, "build", spy)
    stacks_dir = broken_stack(tmp_path, stack, area, change)
    if "max_instances" in change and stack == "prod":
        # Give the subnet room, so the budget (not the subnet) is what fails.
        doc = yaml.safe_load((stacks_dir / "Pulumi.prod.yaml").read_text())
        doc["config"]["bulwark:network"] = {"subnet_cidr": "10.8.0.0/20"}
        (stacks_dir / "Pulumi.prod.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as info:
        run_plan(stack, stacks_dir)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{stacks_dir}/Pulumi.{stack}.yaml: ")
    assert message in text
    assert built == [], "no resource may be declared from an invalid config"


def test_unknown_top_level_key_is_refused(tmp_path: Path) -> None:
    shutil.copy(STACKS_DIR / "Pulumi.dev.yaml", tmp_path)
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(path.read_text() + "  bulwark:databse:\n    tier: db-custom-1-3840\n")
    with pytest.raises(ConfigError, match=r"bulwark:databse: unknown setting"):
        run_plan("dev", tmp_path)


def test_an_area_that_is_not_a_map_is_refused(tmp_path: Path) -> None:
    shutil.copy(STACKS_DIR / "Pulumi.dev.yaml", tmp_path)
    path = tmp_path / "Pulumi.dev.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["bulwark:cache"] = "BASIC"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"bulwark:cache: not a map of settings"):
        run_plan("dev", tmp_path)


def test_longest_names_still_fit_gcp_id_limits() -> None:
    # name_prefix allows 12 characters; with "staging" every derived id must stay valid.
    config = read_stack_config(STACKS_DIR / "Pulumi.dev.yaml")
    config["bulwark:name_prefix"] = "abcdefghijkl"
    config["bulwark:environment"] = "staging"
    pulumi.runtime.set_all_config(pulumi_config(config), [])
    settings = settings_from_config("longest")
    run = run_program(lambda: build(settings), "staging")
    accounts = [r.inputs["accountId"] for r in run.resources if "accountId" in r.inputs]
    assert len(accounts) == 4
    for account in accounts:
        assert re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", account), account
    pools = [r for r in run.resources if r.type.endswith("WorkloadIdentityPool")]
    assert len(pools) == 2
    for pool in pools:
        assert re.fullmatch(r"[a-z][a-z0-9-]{3,31}", pool.inputs["workloadIdentityPoolId"])
    for secret in (r for r in run.resources if r.type == "gcp:secretmanager/secret:Secret"):
        assert len(secret.inputs["secretId"]) <= 255
