"""plugins/module_utils/_monitoring.py: the monitoring stack's objects as data, checked against
the Kubernetes 1.36 OpenAPI schemas (kubernetes-validate, strict), the scrape configuration by the
real `promtool check config` (Debian's prometheus package, a test host package) and every image
against the bundle manifest."""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate  # tests/requirements.in: a missing package fails, never skips
import pytest
import yaml

from ansible_collections.labhub.platform.plugins.module_utils import _monitoring as m

REPO = Path(__file__).resolve().parents[4]
MANIFEST = yaml.safe_load((REPO / "files" / "bundle-manifest.yml").read_text())
BUNDLE = {i["ref"] for i in MANIFEST["images"]}
VARS = {"monitoring_namespace": "monitoring", "gpu_operator_enabled": True, "gpu_operator_namespace": "gpu-operator",
        "portal_enabled": True, "portal_bind_host": "0.0.0.0", "portal_bind_port": 8780, "portal_address": "10.0.0.11",
        "monitoring_grafana_nodeport": 30300, "monitoring_alert_webhooks": ["https://chat.example.org/hook"]}


def build(**changes):
    return m.objects(m.settings_from_vars({**VARS, **changes}, MANIFEST))


def by_name(objs):
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def test_every_object_is_valid_kubernetes_and_every_image_is_in_the_bundle():
    objs = build()
    for obj in objs + [m.admin_secret("monitoring", "s3cret-canary-7f1c"), m.hub_token_secret("monitoring", "t0ken")]:
        kubernetes_validate.validate(obj, "1.36.0", strict=True)
    images = set()
    for obj in objs:
        spec = (obj.get("spec") or {}).get("template", {}).get("spec", {})
        images |= {c["image"] for c in spec.get("containers", [])}
    assert images == set(m.images_from_manifest(MANIFEST).values()) and images <= BUNDLE
    assert len(images) == len(m.COMPONENTS)
    names = by_name(objs)
    assert ("DaemonSet", "node-exporter") in names and names[("DaemonSet", "node-exporter")]["spec"]["template"][
        "spec"]["tolerations"] == [{"operator": "Exists"}]
    assert names[("Service", "grafana")]["spec"]["type"] == "NodePort"
    assert names[("Service", "grafana")]["spec"]["ports"][0]["nodePort"] == 30300
    assert build(monitoring_grafana_nodeport=0)[-1]["spec"]["type"] == "ClusterIP"
    # the same settings give the same objects (a second apply changes nothing)
    assert json.dumps(build(), sort_keys=True) == json.dumps(objs, sort_keys=True)


def test_the_admin_password_is_only_in_its_secret():
    secret = m.admin_secret("monitoring", "s3cret-canary-7f1c")
    assert base64.b64decode(secret["data"]["password"]).decode() == "s3cret-canary-7f1c"
    assert "s3cret-canary-7f1c" not in json.dumps(build())


def test_scrape_jobs_follow_the_site():
    jobs = {j["job_name"]: j for j in m.scrape_config(m.settings_from_vars(VARS, MANIFEST))["scrape_configs"]}
    assert set(jobs) == {"prometheus", "kubernetes-apiservers", "kubelet", "cadvisor", "node-exporter",
                         "kube-state-metrics", "alertmanager", "grafana", "dcgm-exporter", "labhub-portal", "jupyterhub"}
    hub = jobs["jupyterhub"]
    assert hub["metrics_path"] == "/hub/metrics" and hub["authorization"] == {"credentials_file": "/etc/prometheus/hub/token"}
    assert hub["kubernetes_sd_configs"][0]["namespaces"]["names"] == ["jhub"] and "hub;hub" in json.dumps(hub)
    assert "jupyterhub" not in {j["job_name"] for j in m.scrape_config(
        m.settings_from_vars({**VARS, "monitoring_hub_metrics": False}, MANIFEST))["scrape_configs"]}
    assert jobs["dcgm-exporter"]["kubernetes_sd_configs"][0]["namespaces"]["names"] == ["gpu-operator"]
    assert jobs["dcgm-exporter"]["honor_labels"] is True
    assert jobs["labhub-portal"]["static_configs"] == [{"targets": ["10.0.0.11:8780"]}]
    quiet = m.scrape_config(m.settings_from_vars({**VARS, "gpu_operator_enabled": False,
                                                  "portal_bind_host": "127.0.0.1"}, MANIFEST))
    assert not {"dcgm-exporter", "labhub-portal"} & {j["job_name"] for j in quiet["scrape_configs"]}
    bound = m.settings_from_vars({**VARS, "portal_bind_host": "10.0.0.99"}, MANIFEST)
    assert bound["portal_targets"] == ["10.0.0.99:8780"]
    assert m.settings_from_vars({**VARS, "monitoring_portal_target": "portal:9000"}, MANIFEST)["portal_targets"] == [
        "portal:9000"]


def test_promtool_accepts_the_configuration(tmp_path):
    if shutil.which("promtool") is None:
        pytest.fail("promtool not found: make host-deps installs Debian's prometheus package")
    objs = by_name(build())
    config = tmp_path / "prometheus.yml"
    config.write_text(objs[("ConfigMap", "prometheus-config")]["data"]["prometheus.yml"])
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "labhub.yml").write_text(objs[("ConfigMap", "prometheus-rules")]["data"]["labhub.yml"])
    # Debian builds Prometheus without Kubernetes service discovery (its discovery/kubernetes is
    # left out of the package), so for Debian's promtool each kubernetes_sd_configs becomes a
    # static target; everything else (relabelling, auth, TLS, alerting, rule files) is checked as is.
    data = yaml.safe_load(config.read_text())
    for job in data["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["localhost:1"]}]
    # the paths the container mounts, relative to the test directory
    text = yaml.safe_dump(data).replace("/etc/prometheus/rules/*.yml", str(rules / "*.yml"))
    text = text.replace("/var/run/secrets/kubernetes.io/serviceaccount", str(tmp_path))
    text = text.replace("/etc/prometheus/hub", str(tmp_path))
    (tmp_path / "token").write_text("t")
    (tmp_path / "ca.crt").write_text("")
    config.write_text(text)
    out = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_images_from_manifest_needs_every_component():
    partial = {"images": [i for i in MANIFEST["images"] if "grafana" not in i["ref"]]}
    assert "grafana" not in m.images_from_manifest(partial)
    assert set(m.images_from_manifest(MANIFEST)) == set(m.COMPONENTS)
