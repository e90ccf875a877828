# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""SIMULATED model of the jupyterhub (z2jh 4.4.0) chart for the simulated helm: which objects
the chart creates from its values (not a rendering; no container runs). Source: the chart's
templates in jupyterhub/zero-to-jupyterhub-k8s 4.4.0 (hub/, proxy/, scheduling/user-scheduler/),
object names as the chart names them without fullnameOverride (`hub`, `proxy`, `proxy-public`,
`proxy-api`, `user-scheduler`, `hub` ServiceAccount/Secret/ConfigMap/PVC).
"""
from __future__ import annotations

import base64
import json


def _get(values, path, default=None):
    cur = values
    for part in path.split("."):
        if not isinstance(cur, dict) or cur.get(part) is None:
            return default
        cur = cur[part]
    return cur


def _labels(component, release):
    return {"app": "jupyterhub", "component": component, "release": release, "chart": "jupyterhub-4.4.0",
            "heritage": "Helm"}


def _image(values, path, default):
    name = _get(values, path + ".name", default)
    tag = _get(values, path + ".tag")
    return "%s:%s" % (name, tag) if tag else name


def _deployment(name, release, namespace, values, component, image, replicas=1, sa=None, extra_pod=None,
                node_selector=None, tolerations=None):
    sel = {"component": component, "release": release, "app": "jupyterhub"}
    spec = {"containers": [{"name": name, "image": image}]}
    if sa:
        spec["serviceAccountName"] = sa
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        spec["tolerations"] = list(tolerations)
    spec.update(extra_pod or {})
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": _labels(component, release)},
            "spec": {"replicas": replicas, "selector": {"matchLabels": sel},
                     "strategy": {"type": "Recreate"},
                     "template": {"metadata": {"labels": dict(_labels(component, release), **sel)}, "spec": spec}}}


def _ingress_rule(host):
    backend = {"service": {"name": "proxy-public", "port": {"name": "http"}}}
    return {"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}


def objects(release, namespace, values, chart):
    """The chart's main objects from its (computed) values."""
    objs = []
    hub_sa = _get(values, "hub.serviceAccount.name") or "hub"
    if _get(values, "hub.serviceAccount.create", True):
        objs.append({"apiVersion": "v1", "kind": "ServiceAccount",
                     "metadata": {"name": hub_sa, "namespace": namespace, "labels": _labels("hub", release)}})
    objs.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                 "metadata": {"name": "hub", "namespace": namespace, "labels": _labels("hub", release)},
                 "data": {"values.yaml": base64.b64encode(json.dumps(
                     {"hub": {"config": _get(values, "hub.config", {})}}, sort_keys=True).encode()).decode()}})
    objs.append({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "hub", "namespace": namespace, "labels": _labels("hub", release)},
                 "data": {"jupyterhub_config.py": "# rendered by the chart (simulated)\n"}})
    if _get(values, "hub.db.type", "sqlite-pvc") == "sqlite-pvc":
        pvc_spec = {"accessModes": _get(values, "hub.db.pvc.accessModes", ["ReadWriteOnce"]),
                    "resources": {"requests": {"storage": _get(values, "hub.db.pvc.storage", "1Gi")}}}
        if _get(values, "hub.db.pvc.storageClassName"):
            pvc_spec["storageClassName"] = _get(values, "hub.db.pvc.storageClassName")
        objs.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                     "metadata": {"name": "hub-db-dir", "namespace": namespace, "labels": _labels("hub", release)},
                     "spec": pvc_spec})
    objs.append(_deployment("hub", release, namespace, values, "hub",
                            _image(values, "hub.image", "quay.io/jupyterhub/k8s-hub"), sa=hub_sa,
                            node_selector=_get(values, "hub.nodeSelector"),
                            tolerations=_get(values, "hub.tolerations")))
    objs.append({"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "hub", "namespace": namespace, "labels": _labels("hub", release)},
                 "spec": {"type": _get(values, "hub.service.type", "ClusterIP"),
                          "selector": {"component": "hub", "release": release},
                          "ports": [{"name": "hub", "port": 8081, "targetPort": "http"}]}})
    objs.append(_deployment("proxy", release, namespace, values, "proxy",
                            _image(values, "proxy.chp.image", "quay.io/jupyterhub/configurable-http-proxy"),
                            node_selector=_get(values, "proxy.chp.nodeSelector"),
                            tolerations=_get(values, "proxy.chp.tolerations")))
    objs.append({"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "proxy-api", "namespace": namespace, "labels": _labels("proxy-api", release)},
                 "spec": {"selector": {"component": "proxy", "release": release},
                          "ports": [{"port": 8001, "targetPort": "api"}]}})
    svc_type = _get(values, "proxy.service.type", "LoadBalancer")
    http = {"name": "http", "port": _get(values, "proxy.service.ports.http", 80), "targetPort": "http",
            "protocol": "TCP"}
    ports = [http]
    node_ports = _get(values, "proxy.service.nodePorts", {}) or {}
    if svc_type in ("NodePort", "LoadBalancer") and node_ports.get("http"):
        http["nodePort"] = int(node_ports["http"])
    if _get(values, "proxy.https.enabled", False):
        https = {"name": "https", "port": _get(values, "proxy.service.ports.https", 443), "targetPort": "https",
                 "protocol": "TCP"}
        if svc_type in ("NodePort", "LoadBalancer") and node_ports.get("https"):
            https["nodePort"] = int(node_ports["https"])
        ports.append(https)
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "proxy-public", "namespace": namespace, "labels": _labels("proxy-public", release),
                        "annotations": dict(_get(values, "proxy.service.annotations", {}) or {})},
           "spec": {"type": svc_type, "selector": {"component": "proxy", "release": release}, "ports": ports}}
    if _get(values, "proxy.service.loadBalancerIP"):
        svc["spec"]["loadBalancerIP"] = _get(values, "proxy.service.loadBalancerIP")
    objs.append(svc)
    if _get(values, "scheduling.userScheduler.enabled", True):
        objs.append({"apiVersion": "v1", "kind": "ServiceAccount",
                     "metadata": {"name": "user-scheduler", "namespace": namespace,
                                  "labels": _labels("user-scheduler", release)}})
        objs.append(_deployment("user-scheduler", release, namespace, values, "user-scheduler",
                                _image(values, "scheduling.userScheduler.image", "registry.k8s.io/kube-scheduler"),
                                replicas=int(_get(values, "scheduling.userScheduler.replicas", 2)),
                                sa="user-scheduler"))
    if _get(values, "scheduling.podPriority.enabled", False):
        objs.append({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                     "metadata": {"name": "%s-default-priority" % release},
                     "value": int(_get(values, "scheduling.podPriority.defaultPriority", 0))})
    if _get(values, "ingress.enabled", False):
        objs.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                     "metadata": {"name": "jupyterhub", "namespace": namespace,
                                  "annotations": dict(_get(values, "ingress.annotations", {}) or {})},
                     "spec": {"ingressClassName": _get(values, "ingress.ingressClassName"),
                              "rules": [_ingress_rule(h) for h in _get(values, "ingress.hosts", []) or []]}})
    return objs


def notes(release, namespace, chart):
    return ("Thank you for installing JupyterHub! (SIMULATED chart model)\n"
            "Your release is named \"%s\" and installed into the namespace \"%s\"." % (release, namespace))
