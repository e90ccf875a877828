"""plugins/module_utils/_monitoring_rules.py: the alert and recording rules, tested by the real
`promtool test rules` (Debian's prometheus package, installed by make host-deps) against the
scenarios of monitoring_rules/alerts.test.yml, and as data: thresholds flow into the rules, bad
thresholds are named, the rules and the dashboards (with the site's constants) reach their
ConfigMaps."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ansible_collections.labhub.platform.plugins.module_utils import _monitoring as m
from ansible_collections.labhub.platform.plugins.module_utils import _monitoring_rules as r

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
MANIFEST = yaml.safe_load((REPO / "files" / "bundle-manifest.yml").read_text())
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    if not Path(PROMTOOL).exists():
        pytest.fail("promtool not found: run make host-deps (Debian's prometheus package)")
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, check=False)


def write_rules(directory: Path, thresholds: dict | None = None, namespace: str = "jhub") -> Path:
    path = directory / "labhub-rules.yml"
    path.write_text(yaml.safe_dump(r.rules(thresholds or {}, namespace), sort_keys=False, width=1000))
    return path


def test_promtool_runs_every_alert_scenario(tmp_path):
    write_rules(tmp_path)
    shutil.copy(HERE / "monitoring_rules" / "alerts.test.yml", tmp_path)
    checked = promtool("check", "rules", "labhub-rules.yml", cwd=tmp_path)
    assert checked.returncode == 0 and "SUCCESS: 14 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_a_rule_that_would_not_fire_fails_promtool(tmp_path):
    """The scenarios can fail: with an idle threshold of 0 % bob's and dave's idle GPUs (0 % and
    1 %) no longer both count as idle, and promtool says which alert differs."""
    write_rules(tmp_path, {"gpu_idle_percent": 0})
    shutil.copy(HERE / "monitoring_rules" / "alerts.test.yml", tmp_path)
    tested = promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert tested.returncode != 0 and "alertname: LabhubGpuHeldIdle" in tested.stdout + tested.stderr


def test_thresholds_flow_into_the_rules():
    rules = r.rules({"gpu_idle_percent": 12.5, "gpu_idle_for": "3h", "spawn_failure_ratio": 0.5,
                     "spawn_failure_min": 4, "storage_free_percent": 15, "recorder_stale_after": "10m"}, "research")
    alerts = {rule["alert"]: rule for rule in rules["groups"][1]["rules"]}
    records = {rule["record"]: rule["expr"] for rule in rules["groups"][0]["rules"]}
    assert alerts["LabhubGpuHeldIdle"]["expr"] == "labhub:server_gpu_busy:max_percent <= 12.5"
    assert alerts["LabhubGpuHeldIdle"]["for"] == "3h"
    assert 'namespace="research"' in records["labhub:server_gpu_busy:max_percent"]
    assert '> 0.5) and (' in alerts["LabhubSpawnFailures"]["expr"] and alerts["LabhubSpawnFailures"]["expr"].endswith(">= 4)")
    assert alerts["LabhubVolumeNearlyFull"]["expr"].endswith("< 15")
    assert "> 600 or" in alerts["LabhubPortalRecorderStale"]["expr"]
    assert 'namespace="research",deployment="proxy"' in alerts["LabhubProxyDown"]["expr"]
    assert set(alerts) == {"LabhubGpuNodeNotReady", "LabhubGpuXidError", "LabhubGpuMemoryError", "LabhubGpuHeldIdle",
                           "LabhubHubDown", "LabhubProxyDown", "LabhubSpawnFailures", "LabhubVolumeNearlyFull",
                           "LabhubNodeDiskNearlyFull", "LabhubPortalRecorderStale", "LabhubReportSyncFailing"}


@pytest.mark.parametrize("name,value,problem", [
    ("gpu_idle_percent", 101, "not a percentage"),
    ("gpu_idle_percent", True, "not a percentage"),
    ("gpu_idle_for", "59s", "not a Prometheus duration of at least 1m"),
    ("gpu_idle_for", 7200, "not a Prometheus duration of at least 1m"),
    ("spawn_failure_ratio", 1.5, "not a ratio"),
    ("spawn_failure_min", 0, "not a whole number of at least 1"),
    ("report_sync_failing_for", "soon", "not a Prometheus duration of at least 1m"),
])
def test_bad_thresholds_are_named(name, value, problem):
    defaults = {n: spec[0] for n, spec in r.THRESHOLDS.items()}
    assert r.check_thresholds(defaults) == []
    problems = r.check_thresholds({**defaults, name: value})
    assert [(var, p) for var, p, _expected in problems] == [("monitoring_alert_" + name, "is " + problem)]


def test_seconds_of_a_duration():
    assert r.seconds("1h30m") == 5400 and r.seconds("2d") == 172800 and r.seconds("1w") == 604800
    with pytest.raises(ValueError):
        r.seconds("90")


def test_rules_and_dashboards_reach_their_configmaps():
    variables = {"monitoring_namespace": "monitoring", "jupyterhub_namespace": "research",
                 "monitoring_alert_gpu_idle_percent": 10, "monitoring_dashboards_dir": str(REPO / "files" / "dashboards")}
    objs = {(o["kind"], o["metadata"]["name"]): o for o in m.objects(m.settings_from_vars(variables, MANIFEST))}
    rules = json.loads(objs[("ConfigMap", "prometheus-rules")]["data"]["labhub.yml"])
    assert rules == r.rules({**r.thresholds_from_vars(variables)}, "research")
    boards = objs[("ConfigMap", "grafana-dashboards")]["data"]
    assert sorted(boards) == ["labhub-cluster.json", "labhub-gpus.json", "labhub-hub.json", "labhub-portal.json"]
    gpus = json.loads(boards["labhub-gpus.json"])
    constants = {v["name"]: v["query"] for v in gpus["templating"]["list"] if v["type"] == "constant"}
    assert constants == {"hub_namespace": "research", "idle_percent": "10"}
    # the committed file keeps the defaults; only the ConfigMap carries the site's values
    committed = json.loads((REPO / "files" / "dashboards" / "labhub-gpus.json").read_text())
    assert {v["name"]: v["query"] for v in committed["templating"]["list"] if v["type"] == "constant"} == {
        "hub_namespace": "jhub", "idle_percent": "5"}
    # a new rule or dashboard restarts nothing by itself but changes the pods' checksum (reloaded)
    other = m.objects(m.settings_from_vars({**variables, "monitoring_alert_gpu_idle_percent": 20}, MANIFEST))
    checksums = {o["metadata"]["name"]: o["spec"]["template"]["metadata"].get("annotations") for o in other
                 if o["kind"] == "Deployment"}
    assert checksums["prometheus"] != objs[("Deployment", "prometheus")]["spec"]["template"]["metadata"]["annotations"]
    assert checksums["grafana"] != objs[("Deployment", "grafana")]["spec"]["template"]["metadata"]["annotations"]
