"""The monitoring files hold together: promtool checks and unit-tests the rules, the dashboard's queries parse and
use recorded or exported names, the Prometheus config loads, the compose file is valid Compose."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.unit.test_telemetry_deploy import exported_names

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "switchboard.json"
MONITORING = ROOT / "deploy" / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="no promtool: run deploy/dev/system.sh (Debian's prometheus package)"
)
# Grafana's own variables, as Prometheus would see them once Grafana has filled them in.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "6h", "$__interval": "30s"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, check=False)


def alert_names() -> set[str]:
    rules = yaml.safe_load(RULES.read_text())
    return {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [str(t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_promtool_unit_tests_pass_and_each_alert_has_one_that_fires_it() -> None:
    done = promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {a["alertname"] for t in cases for a in t.get("alert_rule_test", []) if a.get("exp_alerts")}
    quiet = {a["alertname"] for t in cases for a in t.get("alert_rule_test", []) if not a.get("exp_alerts")}
    assert fired == alert_names()
    assert quiet == alert_names(), "each alert also has a case where it must stay quiet"


@needs_promtool
def test_a_broken_threshold_fails_the_rule_tests(tmp_path: Path) -> None:
    # The unit tests can fail: the success-rate alert at 50 % no longer fires on an 80 % success rate.
    (tmp_path / "alerts.yml").write_text(RULES.read_text().replace("_rate:15m < 0.95", "_rate:15m < 0.5"))
    (tmp_path / "alerts_test.yml").write_text(RULE_TESTS.read_text())
    done = promtool("test", "rules", str(tmp_path / "alerts_test.yml"))
    assert done.returncode != 0
    assert "SwitchboardCallSuccessRateLow" in done.stdout + done.stderr


@needs_promtool
def test_every_dashboard_query_parses_as_promql(tmp_path: Path) -> None:
    rules = []
    for i, expr in enumerate(dashboard_exprs()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_queries_use_recorded_rules_and_exported_metrics(tmp_path: Path) -> None:
    rules = yaml.safe_load(RULES.read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    used_records = {m for e in dashboard_exprs() for m in re.findall(r"\b(switchboard:[a-z0-9_:]+)", e)}
    assert used_records, "the dashboard's headline panels read the recording rules"
    assert used_records <= recorded, used_records - recorded
    used = {m for e in dashboard_exprs() for m in re.findall(r"\b(cc_[a-zA-Z_]+)", e)}
    assert used <= exported_names(tmp_path), used - exported_names(tmp_path)


@needs_promtool
def test_the_prometheus_config_loads_with_our_rules_and_scrapes_every_process(tmp_path: Path) -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/alerts.yml"]
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    # The API, both queue-worker replicas' ports, the agent worker: the ports the compose file gives them.
    assert {"127.0.0.1:8000", "127.0.0.1:9100", "127.0.0.1:9101", "127.0.0.1:8082"} <= targets
    assert all(t.startswith("127.0.0.1:") for t in targets)
    config["rule_files"] = [str(RULES)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    done = promtool("check", "config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_compose_file_is_valid_compose() -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    done = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(ROOT / "deploy" / "docker-compose.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_compose_mistake_is_caught(tmp_path: Path) -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    compose["services"]["prometheus"]["restart"] = ["always"]
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(yaml.safe_dump(compose))
    checker = Path(sys.executable).with_name("check-jsonschema")
    done = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0


def test_the_monitoring_stack_mounts_files_that_exist_and_listens_on_loopback() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    monitoring = {n: s for n, s in compose["services"].items() if "monitoring" in s.get("profiles", [])}
    assert set(monitoring) == {"prometheus", "grafana", "otel-collector", "jaeger"}
    for name, svc in monitoring.items():
        for volume in svc.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (ROOT / "deploy" / source).exists(), (name, source)
    collector = yaml.safe_load((MONITORING / "otel-collector.yml").read_text())
    endpoints = [p["endpoint"] for p in collector["receivers"]["otlp"]["protocols"].values()]
    assert endpoints == ["127.0.0.1:4317", "127.0.0.1:4318"]
    assert "127.0.0.1:4318" in compose["x-switchboard"]["environment"]["SWITCHBOARD_OTLP_ENDPOINT"]
    ini = (MONITORING / "grafana" / "grafana.ini").read_text()
    assert "http_addr = 127.0.0.1" in ini
