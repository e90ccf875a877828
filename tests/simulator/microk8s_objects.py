# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""SIMULATED objects MicroK8s 1.36 creates itself (not a chart): applied with the real kubectl to
the harness's real control plane right after `snap install microk8s` (Calico's cni.yaml, the
default dns addon) and when a core addon is enabled. Test double: the objects are trimmed to the
fields Labhub's roles and tests read; KWOK plays their pods, no container runs.

Sources, at the pinned track (tests/simulator/README.md, "Conformance", rows 4, 28 and 53):
canonical/microk8s v1.36 `upgrade-scripts/000-switch-to-calico/resources/calico.yaml` (the
Calico manifest MicroK8s applies as `$SNAP_DATA/args/cni-network/cni.yaml`: Calico v3.29.3),
canonical/microk8s-core-addons (main at f6898115) `addons/dns/coredns.yaml`,
`addons/hostpath-storage/storage.yaml`, `addons/metrics-server/metrics-server.yaml` (object
names, namespaces and images: the same images as the bundle manifest's `used_by: [microk8s]`,
checked by tests/unit/test_calico_network_operator_render.py). The `ingress` model is the older
nginx addon: the 1.36 addon fetches Traefik from the internet, which Labhub refuses (row 28).
"""
from __future__ import annotations

CALICO_VERSION = "v3.29.3"
CALICO_POOL_CIDR = "10.1.0.0/16"

# (plural, kind, scope) of the Calico CRDs (group crd.projectcalico.org, version v1)
CALICO_CRDS = [
    ("bgpconfigurations", "BGPConfiguration", "Cluster"), ("bgpfilters", "BGPFilter", "Cluster"),
    ("bgppeers", "BGPPeer", "Cluster"), ("blockaffinities", "BlockAffinity", "Cluster"),
    ("caliconodestatuses", "CalicoNodeStatus", "Cluster"), ("clusterinformations", "ClusterInformation", "Cluster"),
    ("felixconfigurations", "FelixConfiguration", "Cluster"),
    ("globalnetworkpolicies", "GlobalNetworkPolicy", "Cluster"), ("globalnetworksets", "GlobalNetworkSet", "Cluster"),
    ("hostendpoints", "HostEndpoint", "Cluster"), ("ipamblocks", "IPAMBlock", "Cluster"),
    ("ipamconfigs", "IPAMConfig", "Cluster"), ("ipamhandles", "IPAMHandle", "Cluster"),
    ("ippools", "IPPool", "Cluster"), ("ipreservations", "IPReservation", "Cluster"),
    ("kubecontrollersconfigurations", "KubeControllersConfiguration", "Cluster"),
    ("networkpolicies", "NetworkPolicy", "Namespaced"), ("networksets", "NetworkSet", "Namespaced"),
]

NAMESPACES = ["default", "kube-system", "kube-public", "kube-node-lease"]


def _ns(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _cm_ref(key):
    return {"configMapKeyRef": {"name": "calico-config", "key": key}}


def calico_objects():
    """The Calico manifest (cni.yaml) as MicroK8s applies it at install."""
    objs = [{
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "calico-config", "namespace": "kube-system"},
        "data": {"typha_service_name": "none", "calico_backend": "vxlan", "veth_mtu": "0",
                 "cni_network_config": (
                     '{\n  "name": "k8s-pod-network",\n  "cniVersion": "0.3.1",\n  "plugins": [\n    {\n'
                     '      "type": "calico",\n      "log_level": "info",\n      "datastore_type": "kubernetes",\n'
                     '      "nodename": "__KUBERNETES_NODE_NAME__",\n      "mtu": __CNI_MTU__,\n'
                     '      "ipam": {"type": "calico-ipam"},\n      "policy": {"type": "k8s"},\n'
                     '      "kubernetes": {"kubeconfig": "__KUBECONFIG_FILEPATH__"}\n    },\n'
                     '    {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}},\n'
                     '    {"type": "bandwidth", "capabilities": {"bandwidth": true}}\n  ]\n}')}}]
    for plural, kind, scope in CALICO_CRDS:
        objs.append({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "%s.crd.projectcalico.org" % plural},
            "spec": {"group": "crd.projectcalico.org", "scope": scope,
                     "names": {"kind": kind, "listKind": kind + "List", "plural": plural,
                               "singular": kind.lower()},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}}}]}})
    objs += [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "calico-node", "namespace": "kube-system"}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "calico-kube-controllers", "namespace": "kube-system"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "calico-node"},
         "rules": [{"apiGroups": ["crd.projectcalico.org"], "resources": ["ippools", "felixconfigurations"],
                    "verbs": ["get", "list", "watch", "create", "update"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "calico-node"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "calico-node"},
         "subjects": [{"kind": "ServiceAccount", "name": "calico-node", "namespace": "kube-system"}]},
        {"apiVersion": "apps/v1", "kind": "DaemonSet",
         "metadata": {"name": "calico-node", "namespace": "kube-system", "labels": {"k8s-app": "calico-node"}},
         "spec": {
             "selector": {"matchLabels": {"k8s-app": "calico-node"}},
             "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
             "template": {
                 "metadata": {"labels": {"k8s-app": "calico-node"}},
                 "spec": {
                     "nodeSelector": {"kubernetes.io/os": "linux"}, "hostNetwork": True,
                     "tolerations": [{"effect": "NoSchedule", "operator": "Exists"},
                                     {"key": "CriticalAddonsOnly", "operator": "Exists"},
                                     {"effect": "NoExecute", "operator": "Exists"}],
                     "serviceAccountName": "calico-node", "terminationGracePeriodSeconds": 0,
                     "priorityClassName": "system-node-critical",
                     "initContainers": [
                         {"name": "upgrade-ipam", "image": "docker.io/calico/cni:%s" % CALICO_VERSION,
                          "command": ["/opt/cni/bin/calico-ipam", "-upgrade"]},
                         {"name": "install-cni", "image": "docker.io/calico/cni:%s" % CALICO_VERSION,
                          "command": ["/opt/cni/bin/install"],
                          "env": [{"name": "CNI_CONF_NAME", "value": "10-calico.conflist"},
                                  {"name": "CNI_NETWORK_CONFIG", "valueFrom": _cm_ref("cni_network_config")},
                                  {"name": "KUBERNETES_NODE_NAME",
                                   "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                                  {"name": "CNI_MTU", "valueFrom": _cm_ref("veth_mtu")},
                                  {"name": "SLEEP", "value": "false"},
                                  {"name": "CNI_NET_DIR", "value": "/var/snap/microk8s/current/args/cni-network"}]}],
                     "containers": [{
                         "name": "calico-node", "image": "docker.io/calico/node:%s" % CALICO_VERSION,
                         "env": [
                             {"name": "DATASTORE_TYPE", "value": "kubernetes"},
                             {"name": "WAIT_FOR_DATASTORE", "value": "true"},
                             {"name": "NODENAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                             {"name": "CALICO_NETWORKING_BACKEND", "valueFrom": _cm_ref("calico_backend")},
                             {"name": "CLUSTER_TYPE", "value": "k8s,bgp"},
                             {"name": "IP", "value": "autodetect"},
                             {"name": "IP_AUTODETECTION_METHOD", "value": "first-found"},
                             {"name": "CALICO_IPV4POOL_VXLAN", "value": "Always"},
                             {"name": "CALICO_IPV6POOL_VXLAN", "value": "Never"},
                             {"name": "FELIX_IPINIPMTU", "valueFrom": _cm_ref("veth_mtu")},
                             {"name": "FELIX_VXLANMTU", "valueFrom": _cm_ref("veth_mtu")},
                             {"name": "FELIX_WIREGUARDMTU", "valueFrom": _cm_ref("veth_mtu")},
                             {"name": "CALICO_IPV4POOL_CIDR", "value": CALICO_POOL_CIDR},
                             {"name": "CALICO_DISABLE_FILE_LOGGING", "value": "true"},
                             {"name": "FELIX_DEFAULTENDPOINTTOHOSTACTION", "value": "ACCEPT"},
                             {"name": "FELIX_IPV6SUPPORT", "value": "false"},
                             {"name": "FELIX_HEALTHENABLED", "value": "true"}],
                         "securityContext": {"privileged": True},
                         "resources": {"requests": {"cpu": "250m"}},
                         "volumeMounts": [{"mountPath": "/host/etc/cni/net.d", "name": "cni-net-dir"},
                                          {"mountPath": "/lib/modules", "name": "lib-modules", "readOnly": True}]}],
                     "volumes": [{"name": "lib-modules", "hostPath": {"path": "/lib/modules"}},
                                 {"name": "cni-net-dir",
                                  "hostPath": {"path": "/var/snap/microk8s/current/args/cni-network"}}]}}}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "calico-kube-controllers", "namespace": "kube-system",
                      "labels": {"k8s-app": "calico-kube-controllers"}},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"k8s-app": "calico-kube-controllers"}},
                  "strategy": {"type": "Recreate"},
                  "template": {"metadata": {"labels": {"k8s-app": "calico-kube-controllers"}},
                               "spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                                        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                                                        {"key": "node-role.kubernetes.io/master",
                                                         "effect": "NoSchedule"}],
                                        "serviceAccountName": "calico-kube-controllers",
                                        "priorityClassName": "system-cluster-critical",
                                        "containers": [{"name": "calico-kube-controllers",
                                                        "image": "docker.io/calico/kube-controllers:%s"
                                                        % CALICO_VERSION,
                                                        "env": [{"name": "ENABLED_CONTROLLERS", "value": "node"},
                                                                {"name": "DATASTORE_TYPE",
                                                                 "value": "kubernetes"}]}]}}}},
    ]
    return objs


def calico_runtime_objects():
    """What calico-node creates once it runs: the default IPv4 pool (from CALICO_IPV4POOL_*)."""
    return [{"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
             "metadata": {"name": "default-ipv4-ippool"},
             "spec": {"allowedUses": ["Workload", "Tunnel"], "blockSize": 26, "cidr": CALICO_POOL_CIDR,
                      "ipipMode": "Never", "natOutgoing": True, "nodeSelector": "all()",
                      "vxlanMode": "Always"}}]


def install_objects():
    """Everything present right after `snap install microk8s` (namespaces first)."""
    return [_ns(n) for n in NAMESPACES] + [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kubernetes", "namespace": "default",
                      "labels": {"component": "apiserver", "provider": "kubernetes"}},
         "spec": {"type": "ClusterIP", "clusterIP": "10.152.183.1",
                  "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 16443}]}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "default"}},
    ] + calico_objects() + calico_runtime_objects()


def _deployment(name, namespace, labels, image, replicas=1, extra_spec=None):
    spec = {"serviceAccountName": name, "containers": [{"name": name, "image": image}]}
    spec.update(extra_spec or {})
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": {"labels": dict(labels)}, "spec": spec}}}


def addon_objects(name, args=None):
    """Objects a core addon creates when enabled (removed again when disabled)."""
    args = args or []
    if name == "dns":
        return [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": "kube-system"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
             "data": {"Corefile": ".:53 {\n    errors\n    health {\n      lameduck 5s\n    }\n    ready\n"
                                  "    log . {\n      class error\n    }\n    kubernetes cluster.local in-addr.arpa "
                                  "ip6.arpa {\n      pods insecure\n      fallthrough in-addr.arpa ip6.arpa\n    }\n"
                                  "    prometheus :9153\n    forward . %s\n    cache 30\n    loop\n    reload\n"
                                  "    loadbalance\n}\n" % " ".join(args or ["/etc/resolv.conf"])}},
            _deployment("coredns", "kube-system", {"k8s-app": "kube-dns"}, "docker.io/coredns/coredns:1.14.3"),
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
             "spec": {"selector": {"k8s-app": "kube-dns"}, "clusterIP": "10.152.183.10",
                      "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                                {"name": "metrics", "port": 9153, "protocol": "TCP"}]}},
        ]
    if name in ("hostpath-storage", "storage"):
        policy = next((a.split("=", 1)[1] for a in args if a.startswith("--reclaim-policy=")), "Delete")
        default = next((a.split("=", 1)[1] for a in args if a.startswith("--default-class=")), "true")
        return [
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": "microk8s-hostpath", "namespace": "kube-system"}},
            _deployment("hostpath-provisioner", "kube-system", {"k8s-app": "hostpath-provisioner"},
                        "docker.io/cdkbot/hostpath-provisioner:1.6.0",
                        extra_spec={"serviceAccountName": "microk8s-hostpath"}),
            {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
             "metadata": {"name": "microk8s-hostpath", "annotations": {
                 "storageclass.kubernetes.io/is-default-class": default}},
             "provisioner": "microk8s.io/hostpath", "reclaimPolicy": policy,
             "volumeBindingMode": "WaitForFirstConsumer"},
        ]
    if name == "metrics-server":
        return [
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": "metrics-server", "namespace": "kube-system"}},
            _deployment("metrics-server", "kube-system", {"k8s-app": "metrics-server"},
                        "registry.k8s.io/metrics-server/metrics-server:v0.8.1"),
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "metrics-server", "namespace": "kube-system",
                          "labels": {"k8s-app": "metrics-server"}},
             "spec": {"selector": {"k8s-app": "metrics-server"},
                      "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"}]}},
        ]
    if name == "ingress":
        labels = {"name": "nginx-ingress-microk8s"}
        return [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ingress"}},
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": "nginx-ingress-microk8s-serviceaccount", "namespace": "ingress"}},
            {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "public"},
             "spec": {"controller": "k8s.io/ingress-nginx"}},
            {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx"},
             "spec": {"controller": "k8s.io/ingress-nginx"}},
            {"apiVersion": "apps/v1", "kind": "DaemonSet",
             "metadata": {"name": "nginx-ingress-microk8s-controller", "namespace": "ingress",
                          "labels": {"microk8s-application": "nginx-ingress-microk8s"}},
             "spec": {"selector": {"matchLabels": labels},
                      "template": {"metadata": {"labels": labels},
                                   "spec": {"serviceAccountName": "nginx-ingress-microk8s-serviceaccount",
                                            "containers": [{"name": "nginx-ingress-microk8s",
                                                            "image": "registry.k8s.io/ingress-nginx/controller:"
                                                                     "v1.8.0",
                                                            "ports": [{"name": "http", "containerPort": 80,
                                                                       "hostPort": 80},
                                                                      {"name": "https", "containerPort": 443,
                                                                       "hostPort": 443}]}]}}}},
        ]
    return []


# Keys whose plain values MicroK8s' manifest leaves unquoted (env/data values stay "quoted").
_PLAIN_KEYS = {"name", "kind", "apiVersion", "namespace", "image", "mountPath", "key", "fieldPath", "effect",
               "operator", "serviceAccountName", "priorityClassName", "type", "path", "k8s-app"}


def _yaml_scalar(value, key=None):
    import re  # pylint: disable=import-outside-toplevel
    if key in _PLAIN_KEYS and isinstance(value, str) and re.match(r"^[A-Za-z][A-Za-z0-9_./:-]*$", value) \
            and value.lower() not in ("true", "false", "yes", "no", "on", "off", "null"):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    import json  # pylint: disable=import-outside-toplevel
    return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar


def _yaml(node, indent=0):
    """Block-style YAML as kubectl/MicroK8s manifests are laid out (standard library only, like
    labhub_sim.py): mappings `key: value`, list items `- key: value` under their key, strings
    double-quoted, multi-line strings as `|-` blocks."""
    pad = " " * indent
    lines = []
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, (dict, list)) and value:
                lines.append("%s%s:" % (pad, key))
                lines.extend(_yaml(value, indent + 2))
            elif isinstance(value, str) and "\n" in value:
                lines.append("%s%s: |-" % (pad, key))
                lines.extend("%s  %s" % (pad, line) if line else "" for line in value.split("\n"))
            else:
                lines.append("%s%s: %s" % (pad, key, _yaml_scalar(value, key) if value != {} and value != [] else
                                           ("{}" if value == {} else "[]")))
    else:
        for item in node:
            sub = _yaml(item, indent + 2) if isinstance(item, (dict, list)) else ["%s  %s" % (pad, _yaml_scalar(item))]
            lines.append("%s- %s" % (pad, sub[0].lstrip()))
            lines.extend(sub[1:])
    return lines


def cni_yaml():
    """$SNAP_DATA/args/cni-network/cni.yaml: the Calico manifest MicroK8s applies, as YAML documents
    laid out like MicroK8s' file (env entries `- name: X` / `value: "..."`, ConfigMap data
    `veth_mtu: "0"`), which is what the calico role edits in place."""
    return "".join("---\n%s\n" % "\n".join(_yaml(obj)) for obj in calico_objects())
