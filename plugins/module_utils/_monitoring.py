# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""The monitoring stack of role monitoring, as Kubernetes objects (data, no templates).

Prometheus (with its scrape configuration and rules), Alertmanager, Grafana (its Prometheus data
source provisioned), node exporter on every node and kube-state-metrics, in one namespace, every
image from the bundle manifest (``used_by: [monitoring]``). :func:`objects` builds them from one
settings mapping (:func:`settings_from_vars` reads it from the role's variables); the role applies
them from the controller or writes them (render mode), and the image audit reads them.

What each object copies, at the pinned image versions:

- Prometheus v3.5.0: the flags of its Dockerfile's ENTRYPOINT/CMD (--config.file,
  --storage.tsdb.path) plus retention; Kubernetes service discovery with the pod's ServiceAccount
  (documentation/examples/prometheus-kubernetes.yml of prometheus/prometheus: the API server, the
  kubelets and cAdvisor through the API server's node proxy).
- node exporter v1.9.1: host network and PID, the host's / read-only at /host/root with
  --path.rootfs (its README, "Docker").
- kube-state-metrics v2.16.0: the ClusterRole of its examples/standard/cluster-role.yaml (list and
  watch of the objects it reports), port 8080 for metrics, 8081 for its own telemetry.
- Grafana 12.1.0: provisioning from /etc/grafana/provisioning (datasources/, dashboards/), its data
  in /var/lib/grafana (uid/gid 472), the admin password from a file (GF_SECURITY_ADMIN_PASSWORD__FILE).
- Alertmanager v0.28.1: --config.file, --storage.path.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import json
import os
import re

from ansible_collections.labhub.platform.plugins.module_utils import _monitoring_grafana, _monitoring_rules

COMPONENTS = ("prometheus", "alertmanager", "grafana", "node_exporter", "kube_state_metrics")
# Image name (last path part of the repository) -> component.
IMAGE_NAMES = {"prometheus": "prometheus", "alertmanager": "alertmanager", "grafana": "grafana",
               "node-exporter": "node_exporter", "kube-state-metrics": "kube_state_metrics"}
LABEL_PART_OF = "labhub-monitoring"
DURATION_RE = _monitoring_rules.DURATION_RE  # a Prometheus duration, one definition
SIZE_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
RETENTION_SIZE_RE = re.compile(r"^[0-9]+(B|KB|MB|GB|TB|PB|EB)$")


def images_from_manifest(manifest):
    """component -> image reference, from the manifest's images used_by monitoring (by image name)."""
    out = {}
    for entry in (manifest or {}).get("images") or []:
        if not isinstance(entry, dict) or "monitoring" not in (entry.get("used_by") or []):
            continue
        repository = str(entry.get("ref", "")).rsplit(":", 1)[0]
        component = IMAGE_NAMES.get(repository.rsplit("/", 1)[-1])
        if component:
            out[component] = str(entry["ref"])
    return out


def _labels(component):
    return {"app.kubernetes.io/name": component.replace("_", "-"), "app.kubernetes.io/part-of": LABEL_PART_OF,
            "app.kubernetes.io/managed-by": "labhub"}


def _meta(name, namespace, component, **extra):
    meta = {"name": name, "labels": _labels(component)}
    if namespace:
        meta["namespace"] = namespace
    meta.update(extra)
    return meta


def _service(name, namespace, component, ports, service_type="ClusterIP", cluster_ip=None):
    spec = {"type": service_type, "selector": {"app.kubernetes.io/name": component.replace("_", "-"),
                                               "app.kubernetes.io/part-of": LABEL_PART_OF},
            "ports": ports}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, namespace, component), "spec": spec}


def _pvc(name, namespace, component, size, storage_class):
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _meta(name, namespace, component),
            "spec": spec}


def _workload(kind, name, namespace, component, pod_spec, annotations=None):
    selector = {"app.kubernetes.io/name": component.replace("_", "-"), "app.kubernetes.io/part-of": LABEL_PART_OF}
    template_meta = {"labels": _labels(component)}
    if annotations:
        template_meta["annotations"] = annotations
    spec = {"selector": {"matchLabels": selector}, "template": {"metadata": template_meta, "spec": pod_spec}}
    if kind == "Deployment":
        # one replica writing a ReadWriteOnce volume: the old pod stops before the new one starts
        spec.update(replicas=1, strategy={"type": "Recreate"})
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": _meta(name, namespace, component), "spec": spec}


def _container(name, image, args, port, probe_path, mounts, resources, env=None, port_name="http"):
    container = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent", "args": args,
                 "ports": [{"name": port_name, "containerPort": port}],
                 "readinessProbe": {"httpGet": {"path": probe_path, "port": port_name}, "periodSeconds": 10},
                 "livenessProbe": {"httpGet": {"path": probe_path, "port": port_name}, "periodSeconds": 30,
                                   "failureThreshold": 6},
                 "volumeMounts": mounts, "resources": resources,
                 "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                     "capabilities": {"drop": ["ALL"]}}}
    if env:
        container["env"] = env
    return container


def _rbac(name, namespace, component, rules):
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, namespace, component)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta("labhub-" + name, None, component),
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": _meta("labhub-" + name, None, component),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "labhub-" + name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
    ]


def _endpoints_job(job, namespace, service, port_name, interval, scheme="http", path=None, honor_labels=False):
    """A scrape job over a Service's endpoints (kubernetes_sd role endpoints), one target per pod,
    with the node and pod as labels."""
    job_cfg = {
        "job_name": job, "scrape_interval": interval, "scheme": scheme,
        "kubernetes_sd_configs": [{"role": "endpoints", "namespaces": {"names": [namespace]}}],
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_service_name", "__meta_kubernetes_endpoint_port_name"],
             "regex": "%s;%s" % (re.escape(service), re.escape(port_name)), "action": "keep"},
            {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        ],
    }
    if path:
        job_cfg["metrics_path"] = path
    if honor_labels:
        job_cfg["honor_labels"] = True
    return job_cfg


_SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
#: Where Prometheus reads the hub's metrics token (Secret HUB_TOKEN_SECRET, key token).
HUB_TOKEN_DIR = "/etc/prometheus/hub"
HUB_TOKEN_SECRET = "prometheus-hub-token"
HUB_JOB = _monitoring_rules.HUB_JOB


def scrape_config(cfg):
    """prometheus.yml: what Prometheus scrapes, and where it sends alerts."""
    ns, interval = cfg["namespace"], cfg["scrape_interval"]
    api_auth = {"authorization": {"credentials_file": _SA_DIR + "/token"},
                "tls_config": {"ca_file": _SA_DIR + "/ca.crt"}}
    node_proxy = [
        {"action": "labelmap", "regex": "__meta_kubernetes_node_label_(kubernetes_io_hostname)"},
        {"source_labels": ["__meta_kubernetes_node_name"], "target_label": "node"},
        {"target_label": "__address__", "replacement": "kubernetes.default.svc:443"},
    ]
    jobs = [
        {"job_name": "prometheus", "static_configs": [{"targets": ["localhost:9090"]}]},
        # the API server, with the pod's ServiceAccount (prometheus-kubernetes.yml, job kubernetes-apiservers)
        dict({"job_name": "kubernetes-apiservers", "scheme": "https",
              "kubernetes_sd_configs": [{"role": "endpoints", "namespaces": {"names": ["default"]}}],
              "relabel_configs": [{"source_labels": ["__meta_kubernetes_service_name",
                                                     "__meta_kubernetes_endpoint_port_name"],
                                   "regex": "kubernetes;https", "action": "keep"}]}, **api_auth),
        # each kubelet and its cAdvisor through the API server's node proxy (jobs kubernetes-nodes
        # and kubernetes-nodes-cadvisor of prometheus-kubernetes.yml)
        dict({"job_name": "kubelet", "scheme": "https", "kubernetes_sd_configs": [{"role": "node"}],
              "relabel_configs": node_proxy + [
                  {"source_labels": ["__meta_kubernetes_node_name"], "regex": "(.+)",
                   "target_label": "__metrics_path__", "replacement": "/api/v1/nodes/$1/proxy/metrics"}]},
             **api_auth),
        dict({"job_name": "cadvisor", "scheme": "https", "kubernetes_sd_configs": [{"role": "node"}],
              "relabel_configs": node_proxy + [
                  {"source_labels": ["__meta_kubernetes_node_name"], "regex": "(.+)",
                   "target_label": "__metrics_path__", "replacement": "/api/v1/nodes/$1/proxy/metrics/cadvisor"}]},
             **api_auth),
        _endpoints_job("node-exporter", ns, "node-exporter", "metrics", interval),
        _endpoints_job("kube-state-metrics", ns, "kube-state-metrics", "http-metrics", interval, honor_labels=True),
        _endpoints_job("alertmanager", ns, "alertmanager", "http", interval),
        _endpoints_job("grafana", ns, "grafana", "http", interval),
    ]
    if cfg.get("dcgm_namespace"):
        # the GPU Operator's DCGM exporter (Service nvidia-dcgm-exporter, port gpu-metrics): its
        # own pod/namespace/container labels name the GPU's user pod, so they are kept (honor_labels)
        jobs.append(_endpoints_job("dcgm-exporter", cfg["dcgm_namespace"], "nvidia-dcgm-exporter", "gpu-metrics",
                                   interval, honor_labels=True))
    if cfg.get("hub_metrics"):
        # JupyterHub's /hub/metrics on the hub Service's port "hub" (8081; z2jh templates/hub/service.yaml),
        # with the token of the hub service role jupyterhub registers for Prometheus (scope read:metrics)
        hub = _endpoints_job(HUB_JOB, cfg["hub_namespace"], "hub", "hub", interval, path="/hub/metrics")
        hub["authorization"] = {"credentials_file": HUB_TOKEN_DIR + "/token"}
        jobs.append(hub)
    if cfg.get("portal_targets"):
        # the portal's /metrics (no authentication; recorder and report-sync health)
        jobs.append({"job_name": "labhub-portal", "static_configs": [{"targets": list(cfg["portal_targets"])}]})
    for job in cfg.get("extra_scrape_configs") or []:
        jobs.append(job)
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "external_labels": {"cluster": cfg["cluster_name"]}},
        "rule_files": ["/etc/prometheus/rules/*.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": ["alertmanager.%s.svc:9093" % ns]}]}]},
        "scrape_configs": jobs,
    }


def alertmanager_config(cfg):
    """alertmanager.yml: one route to the receivers the inventory gives (none: alerts are kept
    and shown by Alertmanager and Grafana, sent nowhere)."""
    receivers = [{"name": "labhub-default"}]
    webhooks = [{"url": url, "send_resolved": True} for url in cfg.get("alert_webhooks") or []]
    if webhooks:
        receivers[0]["webhook_configs"] = webhooks
    return {"route": {"receiver": "labhub-default", "group_by": ["alertname", "node"],
                      "group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h"},
            "receivers": receivers}


def grafana_datasources(cfg):
    return {"apiVersion": 1, "datasources": [
        {"name": "Prometheus", "uid": "labhub-prometheus", "type": "prometheus", "access": "proxy",
         "url": "http://prometheus.%s.svc:9090" % cfg["namespace"], "isDefault": True, "editable": False,
         "jsonData": {"timeInterval": cfg["scrape_interval"]}},
        {"name": "Alertmanager", "uid": "labhub-alertmanager", "type": "alertmanager", "access": "proxy",
         "url": "http://alertmanager.%s.svc:9093" % cfg["namespace"], "editable": False,
         "jsonData": {"implementation": "prometheus"}}]}


def grafana_dashboard_provider():
    return {"apiVersion": 1, "providers": [
        {"name": "labhub", "folder": "Labhub", "type": "file", "disableDeletion": True, "editable": False,
         "allowUiUpdates": False, "options": {"path": "/var/lib/grafana-dashboards"}}]}


def _dump(data):
    """YAML-compatible text (JSON is YAML) with sorted keys: stable, so a re-apply changes nothing."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def objects(cfg):
    """Every object of the monitoring stack, in apply order. ``cfg``: see :func:`settings_from_vars`."""
    ns, images, storage_class = cfg["namespace"], cfg["images"], cfg.get("storage_class") or ""
    out = [{"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns, None, "monitoring")}]
    tolerate_all = [{"operator": "Exists"}]

    # -- Prometheus
    prom_config = _dump(scrape_config(cfg))
    rules = _monitoring_rules.rules(cfg.get("alert_thresholds") or {}, cfg.get("hub_namespace") or "jhub")
    out += _rbac("prometheus", ns, "prometheus", [
        {"apiGroups": [""], "resources": ["nodes", "nodes/metrics", "nodes/proxy", "services", "endpoints", "pods"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
        {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
    ])
    out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("prometheus-config", ns, "prometheus"),
                "data": {"prometheus.yml": prom_config}})
    out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("prometheus-rules", ns, "prometheus"),
                "data": {"labhub.yml": _dump(rules)}})
    out.append(_pvc("prometheus-data", ns, "prometheus", cfg["prometheus_storage"], storage_class))
    prom_args = ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus",
                 "--storage.tsdb.retention.time=%s" % cfg["retention"], "--web.enable-lifecycle"]
    if cfg.get("retention_size"):
        prom_args.append("--storage.tsdb.retention.size=%s" % cfg["retention_size"])
    prom_mounts = [{"name": "config", "mountPath": "/etc/prometheus/prometheus.yml", "subPath": "prometheus.yml"},
                   {"name": "rules", "mountPath": "/etc/prometheus/rules"},
                   {"name": "data", "mountPath": "/prometheus"}]
    prom_volumes = [{"name": "config", "configMap": {"name": "prometheus-config"}},
                    {"name": "rules", "configMap": {"name": "prometheus-rules"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "prometheus-data"}}]
    if cfg.get("hub_metrics"):
        prom_mounts.append({"name": "hub-token", "mountPath": HUB_TOKEN_DIR, "readOnly": True})
        prom_volumes.append({"name": "hub-token", "secret": {"secretName": HUB_TOKEN_SECRET, "defaultMode": 0o440}})
    out.append(_workload("Deployment", "prometheus", ns, "prometheus", {
        "serviceAccountName": "prometheus",
        "securityContext": {"runAsUser": 65534, "runAsGroup": 65534, "fsGroup": 65534, "runAsNonRoot": True},
        "containers": [_container("prometheus", images["prometheus"], prom_args, 9090, "/-/ready", prom_mounts,
                                  {"requests": {"cpu": "250m", "memory": "512Mi"},
                                   "limits": {"memory": cfg["prometheus_memory"]}})],
        "volumes": prom_volumes,
    }, annotations={"labhub.io/config-checksum": _checksum(prom_config + _dump(rules))}))
    out.append(_service("prometheus", ns, "prometheus", [{"name": "http", "port": 9090, "targetPort": "http"}]))

    # -- Alertmanager
    am_config = _dump(alertmanager_config(cfg))
    out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("alertmanager-config", ns, "alertmanager"),
                "data": {"alertmanager.yml": am_config}})
    out.append(_workload("Deployment", "alertmanager", ns, "alertmanager", {
        "securityContext": {"runAsUser": 65534, "runAsGroup": 65534, "fsGroup": 65534, "runAsNonRoot": True},
        "containers": [_container("alertmanager", images["alertmanager"],
                                  ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"],
                                  9093, "/-/ready", [
                                      {"name": "config", "mountPath": "/etc/alertmanager"},
                                      {"name": "data", "mountPath": "/alertmanager"}],
                                  {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}})],
        "volumes": [{"name": "config", "configMap": {"name": "alertmanager-config"}},
                    {"name": "data", "emptyDir": {}}],
    }, annotations={"labhub.io/config-checksum": _checksum(am_config)}))
    out.append(_service("alertmanager", ns, "alertmanager", [{"name": "http", "port": 9093, "targetPort": "http"}]))

    # -- node exporter, on every node (every taint tolerated)
    out.append(_workload("DaemonSet", "node-exporter", ns, "node_exporter", {
        "hostNetwork": True, "hostPID": True, "tolerations": tolerate_all,
        "securityContext": {"runAsUser": 65534, "runAsGroup": 65534, "runAsNonRoot": True},
        "containers": [_container("node-exporter", images["node_exporter"],
                                  ["--path.rootfs=/host/root", "--web.listen-address=:9100"], 9100, "/", [
                                      {"name": "root", "mountPath": "/host/root", "readOnly": True,
                                       "mountPropagation": "HostToContainer"}],
                                  {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
                                  port_name="metrics")],
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
    }))
    out.append(_service("node-exporter", ns, "node_exporter", [{"name": "metrics", "port": 9100, "targetPort": "metrics"}],
                        cluster_ip="None"))

    # -- kube-state-metrics
    out += _rbac("kube-state-metrics", ns, "kube_state_metrics", [
        {"apiGroups": [""], "resources": ["configmaps", "secrets", "nodes", "pods", "services", "serviceaccounts",
                                          "resourcequotas", "replicationcontrollers", "limitranges",
                                          "persistentvolumeclaims", "persistentvolumes", "namespaces", "endpoints"],
         "verbs": ["list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["statefulsets", "daemonsets", "deployments", "replicasets"],
         "verbs": ["list", "watch"]},
        {"apiGroups": ["batch"], "resources": ["cronjobs", "jobs"], "verbs": ["list", "watch"]},
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ["list", "watch"]},
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["list", "watch"]},
        {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses", "volumeattachments"], "verbs": ["list", "watch"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies", "ingresses", "ingressclasses"],
         "verbs": ["list", "watch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"], "verbs": ["list", "watch"]},
        {"apiGroups": ["admissionregistration.k8s.io"],
         "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"], "verbs": ["list", "watch"]},
    ])
    ksm = _container("kube-state-metrics", images["kube_state_metrics"], ["--port=8080", "--telemetry-port=8081"],
                     8080, "/livez", [], {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                     port_name="http-metrics")
    ksm["ports"].append({"name": "telemetry", "containerPort": 8081})
    ksm["readinessProbe"]["httpGet"] = {"path": "/readyz", "port": "telemetry"}
    del ksm["volumeMounts"]
    out.append(_workload("Deployment", "kube-state-metrics", ns, "kube_state_metrics", {
        "serviceAccountName": "kube-state-metrics",
        "securityContext": {"runAsUser": 65534, "runAsGroup": 65534, "runAsNonRoot": True},
        "containers": [ksm]}))
    out.append(_service("kube-state-metrics", ns, "kube_state_metrics",
                        [{"name": "http-metrics", "port": 8080, "targetPort": "http-metrics"},
                         {"name": "telemetry", "port": 8081, "targetPort": "telemetry"}]))

    # -- Grafana
    datasources, provider = _dump(grafana_datasources(cfg)), _dump(grafana_dashboard_provider())
    boards = dashboards(cfg["dashboards_dir"], cfg.get("hub_namespace") or "jhub",
                        (cfg.get("alert_thresholds") or {}).get("gpu_idle_percent", 5)) if cfg.get("dashboards_dir") else {}
    dashboards_data = dict((name, _dump(board)) for name, board in sorted(boards.items()))
    out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("grafana-provisioning", ns, "grafana"),
                "data": {"datasources.yml": datasources, "dashboards.yml": provider}})
    out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("grafana-dashboards", ns, "grafana"),
                "data": dashboards_data})
    out.append(_pvc("grafana-data", ns, "grafana", cfg["grafana_storage"], storage_class))
    site = cfg.get("grafana_site") or {}
    exposure = _monitoring_grafana.exposure(site)
    login_volumes, login_mounts = _monitoring_grafana.grafana_volumes(site)
    grafana = _container("grafana", images["grafana"], [], 3000, exposure["path"] + "api/health", [
        {"name": "provisioning", "mountPath": "/etc/grafana/provisioning/datasources/datasources.yml",
         "subPath": "datasources.yml"},
        {"name": "provisioning", "mountPath": "/etc/grafana/provisioning/dashboards/dashboards.yml",
         "subPath": "dashboards.yml"},
        {"name": "dashboards", "mountPath": "/var/lib/grafana-dashboards"},
        {"name": "admin", "mountPath": "/etc/grafana-admin", "readOnly": True},
        {"name": "data", "mountPath": "/var/lib/grafana"}],
        {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        env=[{"name": "GF_SECURITY_ADMIN_USER", "value": "admin"},
             {"name": "GF_SECURITY_ADMIN_PASSWORD__FILE", "value": "/etc/grafana-admin/password"},
             # offline: no update checks, no usage reports, no plugin catalogue, no gravatar
             {"name": "GF_ANALYTICS_REPORTING_ENABLED", "value": "false"},
             {"name": "GF_ANALYTICS_CHECK_FOR_UPDATES", "value": "false"},
             {"name": "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES", "value": "false"},
             {"name": "GF_PLUGINS_PLUGIN_ADMIN_ENABLED", "value": "false"},
             {"name": "GF_NEWS_NEWS_FEED_ENABLED", "value": "false"},
             {"name": "GF_AVATARS_DISABLE_GRAVATAR", "value": "true"},
             {"name": "GF_USERS_ALLOW_SIGN_UP", "value": "false"},
             {"name": "GF_PATHS_DATA", "value": "/var/lib/grafana"}] + _monitoring_grafana.grafana_env(site))
    grafana["volumeMounts"] += [{"name": "tmp", "mountPath": "/tmp"}] + login_mounts
    if exposure["tls"] and not exposure["ingress"]:  # Grafana serves https itself on its NodePort
        for probe in ("readinessProbe", "livenessProbe"):
            grafana[probe]["httpGet"]["scheme"] = "HTTPS"
    out.append(_workload("Deployment", "grafana", ns, "grafana", {
        "securityContext": {"runAsUser": 472, "runAsGroup": 472, "fsGroup": 472, "runAsNonRoot": True},
        "containers": [grafana],
        "volumes": [{"name": "provisioning", "configMap": {"name": "grafana-provisioning"}},
                    {"name": "dashboards", "configMap": {"name": "grafana-dashboards"}},
                    {"name": "admin", "secret": {"secretName": "grafana-admin", "defaultMode": 0o400}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "grafana-data"}},
                    {"name": "tmp", "emptyDir": {}}] + login_volumes,
    }, annotations={"labhub.io/config-checksum": _checksum(datasources + provider + "".join(dashboards_data.values()))}))
    ports = [{"name": "http", "port": 3000, "targetPort": "http"}]
    if exposure["nodeport"]:
        ports[0]["nodePort"] = exposure["nodeport"]
    out.append(_service("grafana", ns, "grafana", ports,
                        service_type="NodePort" if exposure["nodeport"] else "ClusterIP"))
    grafana_ingress = _monitoring_grafana.ingress(site, _meta("grafana", ns, "grafana"))
    if grafana_ingress:
        out.append(grafana_ingress)
    return out


def _secret(name, namespace, component, data, secret_type="Opaque"):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(name, namespace, component), "type": secret_type,
            "data": dict((key, base64.b64encode(value.encode("utf-8")).decode("ascii")) for key, value in data.items())}


def admin_secret(namespace, password):
    """Grafana's admin password, as a Secret (the only place it is kept in the cluster)."""
    return _secret("grafana-admin", namespace, "grafana", {"password": password})


def hub_token_secret(namespace, token):
    """The hub service token Prometheus scrapes /hub/metrics with (scope read:metrics only)."""
    return _secret(HUB_TOKEN_SECRET, namespace, "prometheus", {"token": token})


def grafana_oauth_secret(namespace, secret):
    """Grafana's OAuth client secret (the hub service labhub-grafana's token)."""
    return _secret(_monitoring_grafana.OAUTH_SECRET, namespace, "grafana", {"client-secret": secret})


def grafana_tls_secret(namespace, cert, key):
    """The certificate Grafana (or its Ingress) serves."""
    return _secret(_monitoring_grafana.TLS_SECRET, namespace, "grafana", {"tls.crt": cert, "tls.key": key},
                   secret_type="kubernetes.io/tls")


def _checksum(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def settings_from_vars(v, manifest):
    """The settings :func:`objects` reads, from the role's variables (a mapping) and the bundle manifest."""
    portal_targets = []
    bind = str(v.get("portal_bind_host") or "")
    if v.get("monitoring_portal_target"):
        portal_targets = [str(v["monitoring_portal_target"])]
    elif v.get("portal_enabled") and bind not in ("", "127.0.0.1", "::1", "localhost") and v.get("portal_address"):
        portal_targets = ["%s:%s" % (v["portal_address"] if bind in ("0.0.0.0", "::") else bind,
                                     v.get("portal_bind_port") or 8780)]
    return {
        "namespace": v.get("monitoring_namespace", "monitoring"),
        "cluster_name": v.get("monitoring_cluster_name") or "labhub",
        "images": images_from_manifest(manifest),
        "scrape_interval": v.get("monitoring_scrape_interval", "30s"),
        "retention": v.get("monitoring_retention", "15d"),
        "retention_size": v.get("monitoring_retention_size", ""),
        "prometheus_storage": v.get("monitoring_prometheus_storage", "20Gi"),
        "prometheus_memory": v.get("monitoring_prometheus_memory", "2Gi"),
        "grafana_storage": v.get("monitoring_grafana_storage", "1Gi"),
        "storage_class": v.get("monitoring_storage_class", "microk8s-hostpath"),
        # Grafana's address, exposure and sign-in through the hub (_monitoring_grafana)
        "grafana_site": dict((key, v.get(key)) for key in _monitoring_grafana.DEFAULTS),
        "dcgm_namespace": v.get("gpu_operator_namespace", "gpu-operator") if v.get("gpu_operator_enabled") else "",
        "portal_targets": portal_targets,
        "alert_webhooks": list(v.get("monitoring_alert_webhooks") or []),
        "extra_scrape_configs": list(v.get("monitoring_extra_scrape_configs") or []),
        "hub_namespace": v.get("jupyterhub_namespace") or "jhub",
        "hub_metrics": bool(v.get("monitoring_hub_metrics", True)),
        "alert_thresholds": _monitoring_rules.thresholds_from_vars(v),
        "dashboards_dir": v.get("monitoring_dashboards_dir") or "",
    }


def dashboards(directory, hub_namespace, idle_percent):
    """file name -> dashboard (a mapping) of every ``*.json`` in ``directory`` (files/dashboards,
    generated by its generate.py), with the constants the site decides set: ``hub_namespace``
    and ``idle_percent``. Raises ValueError naming a file that is not a dashboard."""
    out = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json"):
            continue
        path = os.path.join(directory, name)
        try:
            with open(path) as handle:
                board = json.load(handle)
        except (OSError, ValueError) as exc:
            raise ValueError("%s: %s" % (path, exc))
        if not isinstance(board, dict) or not board.get("uid") or not isinstance(board.get("panels"), list):
            raise ValueError("%s: not a Grafana dashboard (no uid or panels)" % path)
        values = {"hub_namespace": str(hub_namespace), "idle_percent": _monitoring_rules.number(idle_percent)}
        for variable in (board.get("templating") or {}).get("list") or []:
            if variable.get("type") == "constant" and variable.get("name") in values:
                value = values[variable["name"]]
                variable["query"] = value
                variable["current"] = {"text": value, "value": value}
                variable["options"] = [{"selected": True, "text": value, "value": value}]
        out[name] = board
    return out
