"""The Kubernetes manifests agree with the code: commands, probes, settings, secrets, drains and KEDA's triggers."""

from __future__ import annotations

import inspect
import re
from functools import cache
from typing import Any

import pytest
import yaml

from orchestrator.api.health import router as health_router
from orchestrator.config import REPO_ROOT, Settings
from orchestrator.queue.call_queue import CallQueue
from orchestrator.queue.keys import QueueKeys
from orchestrator.telemetry import names
from tests.unit.test_deploy_files import THIRD_PARTY_ENV, parse_cli, settings_env_names

pytestmark = pytest.mark.unit

BASE = REPO_ROOT / "deploy" / "k8s" / "base"
OURS = {"switchboard-api": "serve", "switchboard-queue-worker": "worker", "switchboard-agent-worker": "agent-worker"}
# Settings whose values hold a password or key: they may only come from a Secret.
SECRET_ENV = {
    "REDIS_URL",
    "DATABASE_URL",
    "LIVEKIT_API_KEY",
    "LIVEKIT_API_SECRET",
    "LIVEKIT_KEYS",
    "SWITCHBOARD_CONSOLE_SECRET",
    "SWITCHBOARD_INTAKE_SECRET",
}
K8S_THIRD_PARTY_ENV = {**THIRD_PARTY_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": "opentelemetry: where each job exports"}


@cache
def objects() -> tuple[dict[str, Any], ...]:
    found: list[dict[str, Any]] = []
    for path in sorted(BASE.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            found += [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    return tuple(found)


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects() if o["kind"] == kind}


def container(deployment: str) -> dict[str, Any]:
    (only,) = of_kind("Deployment")[deployment]["spec"]["template"]["spec"]["containers"]
    found: dict[str, Any] = only
    return found


def env(deployment: str) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(deployment).get("env", [])}


def cli_params(deployment: str) -> dict[str, Any]:
    path, params = parse_cli([str(a) for a in container(deployment)["args"]])
    assert path == OURS[deployment]
    return params


def port_number(c: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in c["ports"] if p["name"] == port]
    return int(number)


def selects(selector: dict[str, Any], deployment: dict[str, Any]) -> bool:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_the_kustomization_lists_every_manifest_of_the_base() -> None:
    listed = set(yaml.safe_load((BASE / "kustomization.yaml").read_text(encoding="utf-8"))["resources"])
    assert listed == {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}


def test_each_switchboard_deployment_runs_its_subcommand() -> None:
    for deployment in OURS:
        cli_params(deployment)
    api = cli_params("switchboard-api")
    assert api["host"] == "0.0.0.0", "the Service and the kubelet reach the pod's address, not its loopback"
    assert api["port"] == port_number(container("switchboard-api"), "http")


def test_a_deployment_whose_args_the_cli_refuses_is_caught() -> None:
    from tests.unit.test_deploy_files import NotTheCli

    with pytest.raises(NotTheCli):
        parse_cli(["worker", "--slot", "8"])


def test_the_api_probes_are_its_health_routes() -> None:
    routes = {getattr(r, "path", "") for r in health_router.routes}
    c = container("switchboard-api")
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" in routes
    # Liveness must not follow Redis: an outage would restart every API replica for nothing.
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" in routes
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert port_number(c, c[probe]["httpGet"]["port"]) == cli_params("switchboard-api")["port"]


def test_the_agent_worker_serves_its_readiness_on_the_probed_port_of_every_interface() -> None:
    c = container("switchboard-agent-worker")
    e = env("switchboard-agent-worker")
    settings = Settings(
        agent_health_host=e["SWITCHBOARD_AGENT_HEALTH_HOST"]["value"],
        agent_health_port=int(e["SWITCHBOARD_AGENT_HEALTH_PORT"]["value"]),
    )
    assert settings.agent_health_host == "0.0.0.0"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert port_number(c, c["readinessProbe"]["httpGet"]["port"]) == settings.agent_health_port
    # /readyz is 503 while draining: liveness on it would kill a worker whose calls are still ending.
    assert "httpGet" not in c["livenessProbe"]


def test_the_queue_workers_probes_and_scrape_port_are_its_metrics_port() -> None:
    c = container("switchboard-queue-worker")
    port = cli_params("switchboard-queue-worker")["metrics_port"]
    assert port == port_number(c, "metrics")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert port_number(c, c[probe]["tcpSocket"]["port"]) == port
    annotations = of_kind("Deployment")["switchboard-queue-worker"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)


def test_the_queue_worker_has_time_to_drain_before_it_is_killed() -> None:
    drain_s = cli_params("switchboard-queue-worker")["drain_timeout"]
    grace_s = of_kind("Deployment")["switchboard-queue-worker"]["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    # After the drain deadline the worker still hands its calls back and closes its connections.
    assert grace_s >= drain_s + 30


def test_every_variable_set_is_a_setting_or_a_documented_third_party_one() -> None:
    known = settings_env_names() | set(K8S_THIRD_PARTY_ENV)
    for deployment in OURS:
        unknown = set(env(deployment)) - known
        assert not unknown, f"{deployment}: {unknown} is read by nothing"


def test_secrets_come_only_by_reference() -> None:
    assert not of_kind("Secret"), "the Secret is the operator's; its values never live in the repository"
    for deployment in of_kind("Deployment"):
        for name, entry in env(deployment).items():
            if name in SECRET_ENV:
                assert "value" not in entry, f"{deployment}: {name} written in the manifest"
                assert entry["valueFrom"]["secretKeyRef"]["name"] == "switchboard-secrets", f"{deployment}: {name}"
    # The API refuses weak secrets on a reachable address, so all of its secrets must be set.
    assert {"LIVEKIT_API_SECRET", "SWITCHBOARD_CONSOLE_SECRET", "SWITCHBOARD_INTAKE_SECRET"} <= set(
        env("switchboard-api")
    )


def test_every_container_has_requests_a_memory_limit_and_probes() -> None:
    for name, deployment in of_kind("Deployment").items():
        for c in deployment["spec"]["template"]["spec"]["containers"]:
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
            assert "memory" in c["resources"]["limits"], name
            assert "readinessProbe" in c, name
            assert "livenessProbe" in c, name


def test_every_deployment_has_a_disruption_budget_and_network_policy_unless_on_the_host_network() -> None:
    budgets = of_kind("PodDisruptionBudget").values()
    policies = of_kind("NetworkPolicy").values()
    for name, deployment in of_kind("Deployment").items():
        assert [b for b in budgets if selects(b["spec"]["selector"], deployment)], f"{name} has no budget"
        if deployment["spec"]["template"]["spec"].get("hostNetwork"):
            continue  # NetworkPolicies do not apply to pods on the host's network
        assert [p for p in policies if p["spec"]["podSelector"] and selects(p["spec"]["podSelector"], deployment)]


def test_the_queue_workers_scale_on_every_priority_stream_of_the_queue_summed() -> None:
    scaled = of_kind("ScaledObject")["switchboard-queue-worker"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "switchboard-queue-worker"
    triggers = scaled["triggers"]
    assert {t["type"] for t in triggers} == {"redis-streams"}
    priorities = inspect.signature(CallQueue.__init__).parameters["priorities"].default
    prefix = cli_params("switchboard-queue-worker")["prefix"]
    assert prefix == cli_params("switchboard-api")["prefix"]
    assert sorted(t["metadata"]["stream"] for t in triggers) == QueueKeys(prefix, tuple(priorities)).streams
    # XLEN (no consumer group): an acked call is XDELed, so the length is waiting plus in flight.
    assert all("consumerGroup" not in t["metadata"] for t in triggers)
    formula = scaled["advanced"]["scalingModifiers"]["formula"]
    assert sorted(re.findall(r"[a-z]\w*", formula)) == sorted(t["name"] for t in triggers)
    assert set(re.sub(r"[a-z]\w*|\s", "", formula)) <= {"+"}, "the streams' lengths add up"
    slots = cli_params("switchboard-queue-worker")["slots"]
    assert 0 < float(scaled["advanced"]["scalingModifiers"]["target"]) <= slots
    assert scaled["minReplicaCount"] >= 1


def test_the_agent_workers_follow_the_calls_in_flight_and_never_scale_to_zero() -> None:
    scaled = of_kind("ScaledObject")["switchboard-agent-worker"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "switchboard-agent-worker"
    assert scaled["minReplicaCount"] >= 1
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    assert f"sum({names.prometheus_name(names.M_IN_FLIGHT)})" in query
    assert names.prometheus_name(names.M_QUEUE_DEPTH) in query
    slots = int(env("switchboard-agent-worker")["SWITCHBOARD_AGENT_SLOTS"]["value"])
    assert 0 < float(trigger["metadata"]["threshold"]) <= slots


def test_the_agent_worker_is_granted_the_memory_of_its_call_processes() -> None:
    from orchestrator.capacity import Sizing

    sizing = Sizing()
    slots = int(env("switchboard-agent-worker")["SWITCHBOARD_AGENT_SLOTS"]["value"])
    requests = container("switchboard-agent-worker")["resources"]["requests"]
    assert requests["memory"] == f"{sizing.agent_worker_memory_mib(slots)}Mi"
    assert requests["cpu"] == f"{round(sizing.agent_worker_cpu(slots) * 1000)}m"


def test_the_agent_worker_ends_its_calls_itself_before_it_is_killed() -> None:
    from orchestrator.worker.agent_worker import build_server

    e = env("switchboard-agent-worker")
    default = Settings.model_fields["agent_drain_timeout_s"].default
    drain_s = (
        int(e["SWITCHBOARD_AGENT_DRAIN_TIMEOUT_S"]["value"]) if "SWITCHBOARD_AGENT_DRAIN_TIMEOUT_S" in e else default
    )
    pods = of_kind("Deployment")
    grace_s = pods["switchboard-agent-worker"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    # Past the grace period the kubelet SIGKILLs: the worker must have ended its calls (records written) by then.
    assert drain_s + 30 <= grace_s <= drain_s + 120
    # livekit-server waits on SIGTERM until its rooms are empty, which the agents' drain bounds.
    assert pods["livekit-server"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= drain_s + 30
    # The worker drains for that long, not livekit's own default (an hour).
    server = build_server(Settings(_env_file=None, agent_drain_timeout_s=drain_s))
    assert server._drain_timeout == drain_s  # livekit exposes no getter for it


# ---------------------------------------------------------------------- livekit-server nodes and Redis Sentinel
OVERLAYS = REPO_ROOT / "deploy" / "k8s" / "overlays"


def overlay_patches(overlay: str) -> list[dict[str, Any]]:
    """The overlay's patches, each ``{"target": ..., "ops": [JSON patch operations]}``."""
    kustomization = yaml.safe_load((OVERLAYS / overlay / "kustomization.yaml").read_text(encoding="utf-8"))
    return [{"target": p["target"], "ops": yaml.safe_load(p["patch"])} for p in kustomization["patches"]]


def overlay_value(overlay: str, kind: str, path: str) -> Any:
    (value,) = [
        op["value"]
        for p in overlay_patches(overlay)
        if p["target"]["kind"] == kind
        for op in p["ops"]
        if op["path"] == path
    ]
    return value


def livekit_configs() -> dict[str, dict[str, Any]]:
    """livekit.yaml as the base and each overlay give it to livekit-server."""
    found = {"base": yaml.safe_load(of_kind("ConfigMap")["livekit-config"]["data"]["livekit.yaml"])}
    for overlay in ("production", "sentinel"):
        found[overlay] = yaml.safe_load(overlay_value(overlay, "ConfigMap", "/data/livekit.yaml"))
    return found


def test_every_livekit_node_places_rooms_as_deploy_livekit_yaml_says() -> None:
    deployed = yaml.safe_load((REPO_ROOT / "deploy" / "livekit.yaml").read_text(encoding="utf-8"))["node_selector"]
    for name, config in livekit_configs().items():
        assert config["node_selector"] == deployed, name
    # More than one node, and the workers reach them all through one Service (the nodes relay to each other).
    assert of_kind("Deployment")["livekit-server"]["spec"]["replicas"] >= 2
    assert of_kind("ConfigMap")["switchboard-config"]["data"]["livekit-url"] == "ws://livekit-server:7880"


def test_the_sentinel_overlay_points_every_redis_client_at_the_sentinels() -> None:
    configs = livekit_configs()
    # Production's livekit.yaml but for Redis, found through the sentinels (as LiveKit SIP's).
    assert {k: v for k, v in configs["sentinel"].items() if k != "redis"} == {
        k: v for k, v in configs["production"].items() if k != "redis"
    }
    sentinel_redis = configs["sentinel"]["redis"]
    assert set(sentinel_redis) == {"sentinel_master_name", "sentinel_addresses"}
    sip = yaml.safe_load(overlay_value("sentinel", "ConfigMap", "/data/sip.yaml"))
    base_sip = yaml.safe_load(of_kind("ConfigMap")["livekit-config"]["data"]["sip.yaml"])
    assert sip["redis"] == sentinel_redis
    assert {k: v for k, v in sip.items() if k != "redis"} == {k: v for k, v in base_sip.items() if k != "redis"}
    # Our processes: every queue write on a replica before it counts.
    (sync,) = [p for p in overlay_patches("sentinel") if p["target"]["kind"] == "Deployment"]
    assert [re.fullmatch(sync["target"]["name"], d) is not None for d in OURS] == [True] * len(OURS)
    assert sync["ops"] == [
        {
            "op": "add",
            "path": "/spec/template/spec/containers/0/env/-",
            "value": {"name": "SWITCHBOARD_REDIS_SYNC_REPLICAS", "value": "1"},
        }
    ]
    # KEDA: every trigger of the queue workers reads the streams through the same sentinels.
    triggers = of_kind("ScaledObject")["switchboard-queue-worker"]["spec"]["triggers"]
    ops = [p["ops"] for p in overlay_patches("sentinel") if p["target"]["kind"] == "ScaledObject"][0]
    for i in range(len(triggers)):
        patched = {
            op["path"].rsplit("/", 1)[1]: op["value"] for op in ops if op["path"].startswith(f"/spec/triggers/{i}/")
        }
        assert patched == {
            "type": "redis-sentinel-streams",
            "addresses": ",".join(sentinel_redis["sentinel_addresses"]),
            "sentinelMaster": sentinel_redis["sentinel_master_name"],
        }
