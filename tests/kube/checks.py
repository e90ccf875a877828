"""Assertions shared by the site modules (test_site_*.py): what a real Helm install of the real
charts with the roles' values yields on a real control plane, and what the simulated operator
controllers add (tests/harness/kube/operators.py)."""
from __future__ import annotations

import json
import shlex
from typing import Any

from cluster import SiteCluster
from sites import BUNDLE_REFS, CHART_FILES


def tolerates(pod_spec: dict[str, Any], taint: dict[str, str]) -> bool:
    for tol in pod_spec.get("tolerations") or []:
        if tol.get("effect") not in (None, "", taint["effect"]):
            continue
        if tol.get("operator") == "Exists" and (not tol.get("key") or tol["key"] == taint["key"]):
            return True
        if tol.get("key") == taint["key"] and tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def schedulable_nodes(cluster: SiteCluster, pod_spec: dict[str, Any]) -> set[str]:
    """Nodes whose NoSchedule/NoExecute taints the pod tolerates and whose labels match its nodeSelector."""
    out = set()
    for node in cluster.items("/api/v1/nodes"):
        taints = [t for t in node["spec"].get("taints") or [] if t["effect"] in ("NoSchedule", "NoExecute")]
        labels = node["metadata"].get("labels") or {}
        if all(tolerates(pod_spec, t) for t in taints) and all(
                labels.get(k) == v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
            out.add(node["metadata"]["name"])
    return out


def access(cluster: SiteCluster, user: str, verb: str, resource: str, namespace: str, group: str = "") -> bool:
    """A real SubjectAccessReview: what the API server's RBAC authorizer answers for ``user``."""
    status, body = cluster.plane.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
                 "resourceAttributes": {"verb": verb, "resource": resource, "group": group, "namespace": namespace}}})
    assert status == 201, body
    return bool(body["status"].get("allowed"))


def check_ingress(cluster: SiteCluster) -> dict[str, Any]:
    """Role ingress' controller on the real control plane: the DaemonSet's pods run (KWOK plays the
    kubelets: no Traefik process runs, its probes are not executed) on exactly the nodes a pod
    without tolerations may use, from the bundle's image; the IngressClass the hub's Ingress names
    is the controller's; the real RBAC authorizer gives its ServiceAccount what Traefik's
    kubernetesIngress provider reads and writes, and no more."""
    site = cluster.site
    objs = {(o["kind"], o["metadata"]["name"]): o for o in site.ingress}
    ds_obj = objs[("DaemonSet", "labhub-ingress")]
    ns = ds_obj["metadata"]["namespace"]

    def ready() -> dict[str, Any] | None:
        status = cluster.get(f"/apis/apps/v1/namespaces/{ns}/daemonsets/labhub-ingress").get("status") or {}
        desired = status.get("desiredNumberScheduled", 0)
        return status if desired > 0 and status.get("numberReady") == desired else None

    status = cluster.wait("the ingress controller ready on every node it may run on", ready, timeout=120)
    pods = cluster.pods(ns, "app.kubernetes.io/name=traefik")
    nodes = {p["spec"]["nodeName"] for p in pods if p["status"].get("phase") == "Running"}
    assert nodes == schedulable_nodes(cluster, pods[0]["spec"]), nodes
    assert status["desiredNumberScheduled"] == len(nodes)
    image = pods[0]["spec"]["containers"][0]["image"]
    assert not unpinned({image}), image
    ports = {p["name"]: p.get("hostPort") for p in pods[0]["spec"]["containers"][0]["ports"]}
    assert (ports["web"], ports["websecure"]) == (80, 443), ports

    klass = site.hub_values["ingress"]["ingressClassName"]
    assert cluster.get(f"/apis/networking.k8s.io/v1/ingressclasses/{klass}")["spec"]["controller"] == \
        "traefik.io/ingress-controller"
    hub_ingresses = cluster.items(f"/apis/networking.k8s.io/v1/namespaces/{site.hub_namespace}/ingresses")
    assert [i["spec"]["ingressClassName"] for i in hub_ingresses] == [klass], hub_ingresses

    sa = f"system:serviceaccount:{ns}:labhub-ingress"
    for verb, resource, group, namespace in (("list", "ingresses", "networking.k8s.io", ""),
                                             ("watch", "ingressclasses", "networking.k8s.io", ""),
                                             ("list", "endpointslices", "discovery.k8s.io", ""),
                                             ("list", "services", "", ""),
                                             ("get", "secrets", "", site.hub_namespace)):
        assert access(cluster, sa, verb, resource, namespace, group=group), (verb, resource)
    for verb, resource, group in (("create", "pods", ""), ("delete", "ingresses", "networking.k8s.io"),
                                  ("update", "secrets", "")):
        assert not access(cluster, sa, verb, resource, site.hub_namespace, group=group), (verb, resource)
    code, body = cluster.plane.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": sa, "groups": ["system:serviceaccounts"],
                 "resourceAttributes": {"verb": "update", "resource": "ingresses", "subresource": "status",
                                        "group": "networking.k8s.io", "namespace": site.hub_namespace}}})
    assert code == 201 and body["status"].get("allowed"), body
    return {"nodes": sorted(nodes), "image": image, "class": klass}


def check_monitoring(cluster: SiteCluster) -> dict[str, Any]:
    """Role monitoring on the real control plane: every Deployment available, node exporter on
    every node (KWOK plays the kubelets: no Prometheus process runs), the volumes bound by the
    hostpath-storage addon (simulated provisioner), the Grafana Service on its NodePort, every image
    from the bundle, and what the real RBAC authorizer gives Prometheus' and kube-state-metrics'
    ServiceAccounts: reading what they scrape and watch, and no more."""
    site = cluster.site
    ns = next(o["metadata"]["name"] for o in site.monitoring if o["kind"] == "Namespace")
    for name in ("prometheus", "alertmanager", "kube-state-metrics", "grafana"):
        cluster.wait(f"Deployment {name} available", lambda name=name: cluster.deployment_available(ns, name), timeout=120)
    cluster.wait("node exporter ready", lambda: cluster.daemonset_ready(ns, "node-exporter"), timeout=120)
    ds = cluster.get(f"/apis/apps/v1/namespaces/{ns}/daemonsets/node-exporter")
    assert ds["status"]["desiredNumberScheduled"] == len(site.node_names), ds["status"]
    for claim in ("prometheus-data", "grafana-data"):
        pvc = object_when(cluster, f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}",
                          lambda p: p.get("status", {}).get("phase") == "Bound", f"PVC {claim} bound")
        assert pvc["spec"]["storageClassName"] == "microk8s-hostpath"
    svc = cluster.get(f"/api/v1/namespaces/{ns}/services/grafana")
    images = set()
    for pod in cluster.pods(ns):
        images |= {c["image"] for c in pod["spec"]["containers"]}
    assert not unpinned(images) and len(images) == 5, images
    prom = f"system:serviceaccount:{ns}:prometheus"
    for verb, resource, group in (("list", "nodes", ""), ("get", "nodes/proxy", ""), ("watch", "endpoints", ""),
                                  ("list", "endpointslices", "discovery.k8s.io"), ("list", "pods", "")):
        assert access(cluster, prom, verb, resource, "", group=group), (verb, resource)
    for verb, resource in (("get", "secrets"), ("create", "pods"), ("delete", "nodes")):
        assert not access(cluster, prom, verb, resource, ""), (verb, resource)
    ksm = f"system:serviceaccount:{ns}:kube-state-metrics"
    assert access(cluster, ksm, "watch", "persistentvolumeclaims", "")
    assert not access(cluster, ksm, "get", "secrets", "") and not access(cluster, ksm, "create", "pods", "")
    return {"namespace": ns, "grafana": svc["spec"], "images": sorted(images)}


def unpinned(images: set[str]) -> list[str]:
    return sorted(i for i in images if i not in BUNDLE_REFS)


# -- JupyterHub (z2jh 4.4.0) ---------------------------------------------------------------------
def check_hub(cluster: SiteCluster) -> dict[str, Any]:
    site, values = cluster.site, cluster.site.hub_values
    ns, release = site.hub_namespace, cluster.notes["record"]["hub_release"]
    for name in ("hub", "proxy", "user-scheduler"):
        assert cluster.deployment_available(ns, name), name
    placed = {}
    for component in ("hub", "proxy"):
        pods = cluster.pods(ns, f"component={component}")
        assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
        pod = pods[0]
        assert pod["status"]["phase"] == "Running"
        assert pod["spec"]["nodeName"] in schedulable_nodes(cluster, pod["spec"]), (component, pod["spec"]["nodeName"])
        placed[component] = pod["spec"]["nodeName"]
    hub = cluster.pods(ns, "component=hub")[0]
    # The role's ConfigMap and Secret are what the hub pod mounts and reads.
    volumes = {v["name"]: v for v in hub["spec"]["volumes"]}
    assert volumes["labhub-hub"]["configMap"]["name"] == "labhub-hub-extensions"
    env = {e["name"]: e for e in hub["spec"]["containers"][0]["env"]}
    assert env["LABHUB_HUB_CONFIG"]["value"] == "/usr/local/etc/jupyterhub/labhub/config.yaml"
    assert hub["spec"]["serviceAccountName"] == "hub"
    assert hub["metadata"]["annotations"]["labhub.io/config-checksum"] == values["hub"]["annotations"]["labhub.io/config-checksum"]

    # The hub's ServiceAccount may manage user pods and their volumes in its namespace only.
    sa = f"system:serviceaccount:{ns}:hub"
    assert cluster.get(f"/api/v1/namespaces/{ns}/serviceaccounts/hub")
    assert access(cluster, sa, "create", "pods", ns) and access(cluster, sa, "delete", "persistentvolumeclaims", ns)
    assert not access(cluster, sa, "create", "pods", "default")
    # Nodes are readable only with the dynamic profile (the role's node-reader ClusterRole).
    assert access(cluster, sa, "list", "nodes", "") == ("50-clusterrole-nodes.yaml" in site.hub_manifests)
    assert not access(cluster, sa, "create", "deployments", ns, group="apps")

    pvc = cluster.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/hub-db-dir")
    assert pvc["status"]["phase"] == "Bound" and pvc["spec"]["storageClassName"] == "microk8s-hostpath"

    svc = cluster.get(f"/api/v1/namespaces/{ns}/services/proxy-public")
    wanted = values["proxy"]["service"]
    assert svc["spec"]["type"] == wanted["type"]
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    for name, port in (wanted.get("nodePorts") or {}).items():
        assert ports[name]["nodePort"] == port, (name, ports)
    if values["proxy"].get("https", {}).get("enabled"):
        assert "https" in ports
    else:
        assert "https" not in ports

    puller = cluster.plane.request("GET", f"/apis/apps/v1/namespaces/{ns}/daemonsets/continuous-image-puller")
    hooks = cluster.helm("get", "hooks", release, "-n", ns).stdout
    if values["prePuller"]["continuous"]["enabled"]:
        assert puller[0] == 200
        ds = puller[1]
        wanted_nodes = schedulable_nodes(cluster, ds["spec"]["template"]["spec"])
        assert cluster.wait("the continuous image puller on its nodes", lambda: cluster.daemonset_ready(ns, ds["metadata"]["name"]))
        assert cluster.get(f"/apis/apps/v1/namespaces/{ns}/daemonsets/continuous-image-puller")["status"][
            "desiredNumberScheduled"] == len(wanted_nodes)
    else:
        assert puller[0] == 404
    assert ("name: hook-image-puller" in hooks) == bool(values["prePuller"]["hook"]["enabled"])

    ingress = cluster.plane.request("GET", f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/jupyterhub")
    if values.get("ingress", {}).get("enabled"):
        assert ingress[0] == 200
        spec = ingress[1]["spec"]
        assert spec["ingressClassName"] == values["ingress"]["ingressClassName"]
        assert [r["host"] for r in spec["rules"]] == values["ingress"]["hosts"]
    else:
        assert ingress[0] == 404

    if "10-resourcequota.yaml" in site.hub_manifests:
        quota = cluster.get(f"/api/v1/namespaces/{ns}/resourcequotas/labhub-quota")
        assert cluster.wait("the quota counting the hub's pods", lambda: cluster.get(
            f"/api/v1/namespaces/{ns}/resourcequotas/labhub-quota").get("status", {}).get("used", {}).get("requests.cpu")
            not in (None, "0"))
        assert set(quota["spec"]["hard"]) == set(site.hub_manifests["10-resourcequota.yaml"]["spec"]["hard"])

    images = cluster.release_images(release, ns)
    assert not unpinned(images), unpinned(images)
    return placed


# -- GPU Operator v25.10.1 -----------------------------------------------------------------------
def check_gpu_release(cluster: SiteCluster) -> dict[str, Any]:
    site, values, role = cluster.site, cluster.site.gpu_values, cluster.site.gpu_role
    ns = role["namespace"]
    assert cluster.deployment_available(ns, role["deployment"])
    assert cluster.deployment_available(ns, f"{role['release']}-node-feature-discovery-master")
    policy = cluster.get("/apis/nvidia.com/v1/clusterpolicies/cluster-policy")
    spec = policy["spec"]
    # The role's values reach the ClusterPolicy the chart renders (the operator's only input).
    for key in ("driver", "toolkit", "devicePlugin", "gfd", "migManager", "dcgm", "dcgmExporter", "validator"):
        for field in ("enabled", "repository", "image", "version"):
            if field in values[key]:
                assert spec[key].get(field) == values[key][field], (key, field, spec[key].get(field))
    assert spec["toolkit"]["env"] == values["toolkit"]["env"]
    assert spec["operator"]["runtimeClass"] == values["operator"]["runtimeClass"]
    assert spec["mig"]["strategy"] == values["mig"]["strategy"]
    assert spec["migManager"]["config"]["default"] == values["migManager"]["config"]["default"]
    assert spec["nodeStatusExporter"]["enabled"] is False and spec["sandboxWorkloads"]["enabled"] is False
    if "config" in values["devicePlugin"]:
        ref = values["devicePlugin"]["config"]
        assert spec["devicePlugin"]["config"] == {"name": ref["name"], "default": ref["default"]}
        cm = cluster.get(f"/api/v1/namespaces/{ns}/configmaps/{ref['name']}")
        assert cm["data"] == ref["data"]
    else:
        assert not (spec["devicePlugin"].get("config") or {}).get("name")
    worker = cluster.get(f"/apis/apps/v1/namespaces/{ns}/daemonsets/{role['release']}-node-feature-discovery-worker")
    images = cluster.release_images(role["release"], ns)
    assert not unpinned(images), unpinned(images)
    # The operand images the operator will run, from the ClusterPolicy: every enabled one is in
    # the bundle (the driver's tag gets the GPU nodes' OS appended).
    oses = {f"{h['os']['id']}{h['os']['version']}" for host, h in site.hardware.items()
            if host in (site.gpu_plan or {}).get("node_labels", {}) and h["gpus"]["count"]}
    operands = {f"{spec['operator']['initContainer']['repository']}/{spec['operator']['initContainer']['image']}:"
                f"{spec['operator']['initContainer']['version']}"}
    for key in ("driver", "toolkit", "devicePlugin", "gfd", "migManager", "dcgm", "dcgmExporter", "validator"):
        if spec[key].get("enabled", True):
            ref = f"{spec[key]['repository']}/{spec[key]['image']}:{spec[key]['version']}"
            operands.update({f"{ref}-{os}" for os in oses} if key == "driver" else {ref})
    assert not unpinned(operands), unpinned(operands)
    return {"policy": policy, "worker": worker, "operand_images": operands}


def wait_gpu_converged(cluster: SiteCluster, timeout: float = 90) -> None:
    """roles/gpu_operator/tasks/wait.yml: the operator Deployment and every DaemonSet the values
    enable are ready (kubernetes.core.k8s_info wait), and the RuntimeClass exists."""
    role = cluster.site.gpu_role
    ns = role["namespace"]
    cluster.wait("the operator Deployment", lambda: cluster.deployment_available(ns, role["deployment"]), timeout)
    for name in role["daemonsets"]:
        cluster.wait(f"DaemonSet {name} ready", lambda name=name: cluster.daemonset_ready(ns, name), timeout)
    cluster.wait("RuntimeClass", lambda: cluster.plane.request(
        "GET", f"/apis/node.k8s.io/v1/runtimeclasses/{role['runtime_class']}")[0] == 200, timeout)


def gpu_resources(cluster: SiteCluster, node: str) -> dict[str, str]:
    alloc = cluster.node(node)["status"].get("allocatable") or {}
    return {k: v for k, v in alloc.items() if k.startswith("nvidia.com/")}


def run_smoke_job(cluster: SiteCluster, timeout: float = 90) -> dict[str, Any]:
    """The role's smoke-test Job (roles/gpu_operator/templates/smoke-job.yaml.j2), created as
    tasks/smoke.yml does and awaited until succeeded or failed."""
    job = cluster.site.gpu_role["smoke_job"]
    ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
    status, body = cluster.plane.request("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", job)
    assert status == 201, body

    def done() -> dict[str, Any] | None:
        st = cluster.get(f"/apis/batch/v1/namespaces/{ns}/jobs/{name}").get("status") or {}
        return st if st.get("succeeded") or st.get("failed") else None
    st = cluster.wait(f"Job {name}", done, timeout)
    pods = cluster.pods(ns, f"job-name={name}")
    return {"status": st, "nodes": [p["spec"].get("nodeName") for p in pods]}


# -- Network Operator 25.7.0 ---------------------------------------------------------------------
def rdma_resource(cluster: SiteCluster) -> tuple[str, str]:
    config = json.loads(cluster.site.network["policy"]["spec"]["rdmaSharedDevicePlugin"]["config"])["configList"][0]
    return f"{config.get('resourcePrefix') or 'rdma'}/{config['resourceName']}", str(config["rdmaHcaMax"])


def wait_network_converged(cluster: SiteCluster, timeout: float = 90) -> None:
    """roles/network_operator/tasks/wait.yml: the operator Deployment Available, DaemonSet
    rdma-shared-dp-ds exists and is rolled out, every IB node allocates rdma/<resource> >= 1."""
    net = cluster.site.network
    ns = net["namespace"]
    cluster.wait("the operator Deployment", lambda: cluster.deployment_available(ns, net["release"]), timeout)
    cluster.wait("rdma-shared-dp-ds ready", lambda: cluster.daemonset_ready(ns, "rdma-shared-dp-ds"), timeout)
    resource, _count = rdma_resource(cluster)
    for host in net["ib_hosts"]:
        node = net["nodes"][host]
        cluster.wait(f"{resource} on {node}", lambda node=node: int(
            (cluster.node(node)["status"].get("allocatable") or {}).get(resource, "0")) >= 1, timeout)


def kubectl_json(cluster: SiteCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl(*args, "-o", "json"))


# -- Idempotence ---------------------------------------------------------------------------------
def snapshot(cluster: SiteCluster, namespace: str) -> dict[str, Any]:
    """What the roles rely on in a namespace: workload specs (generation, and the pod template
    without z2jh's checksum/* annotations), Services, and the running pods (their uids)."""
    out: dict[str, Any] = {}
    for kind in ("deployments", "daemonsets", "statefulsets"):
        for obj in cluster.items(f"/apis/apps/v1/namespaces/{namespace}/{kind}"):
            name = f"{kind}/{obj['metadata']['name']}"
            out[name] = obj["metadata"]["generation"]
            template = json.loads(json.dumps(obj["spec"]["template"]))
            annotations = template["metadata"].get("annotations") or {}
            template["metadata"]["annotations"] = {k: v for k, v in annotations.items() if not k.startswith("checksum/")}
            out[name + "#template-without-checksums"] = json.dumps(template, sort_keys=True)
    for pod in cluster.pods(namespace):
        if pod["status"].get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp"):
            out[f"pod/{pod['metadata']['name']}"] = pod["metadata"]["uid"]
    for obj in cluster.items(f"/api/v1/namespaces/{namespace}/services"):
        out[f"services/{obj['metadata']['name']}"] = obj["metadata"]["resourceVersion"]
    return out


def differences(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (before.get(k), after.get(k)) for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}


def rerun(cluster: SiteCluster, releases: list[tuple[str, str, str]], upgrades: dict[str, int]) -> dict[str, Any]:
    """Run the roles' helm steps again with the same values: kubernetes.core.helm for every
    (chart, release, namespace) in one ansible run (what the roles do), then, per chart,
    `upgrades[chart]` times the helm command that module ran the first time (what a plain
    `helm upgrade` with the same values does). Snapshots of the namespace after each step."""
    record = cluster.notes["record"]["helm"]
    out: dict[str, Any] = {}
    for chart, release, namespace in releases:
        out[chart] = {"snapshots": [snapshot(cluster, namespace)],
                      "revisions_before": [h["revision"] for h in cluster.history(release, namespace)]}
    calls = []
    for chart, release, namespace in releases:
        command = shlex.split(record[chart]["command"])
        calls.append({"name": release, "chart_ref": str(CHART_FILES[chart]), "release_namespace": namespace,
                      "values_files": [str(cluster.site.values_file(chart))], "wait": True,
                      "atomic": "--atomic" in command, "timeout": "10m",
                      "create_namespace": "--create-namespace" in command})
    for (chart, release, namespace), again in zip(releases, cluster.helm_modules(calls)):
        result = out[chart]
        result.update(module_changed=again.get("changed"), module_failed=again.get("failed"),
                      revisions_after_module=[h["revision"] for h in cluster.history(release, namespace)])
        result["snapshots"].append(snapshot(cluster, namespace))
        for _upgrade in range(upgrades.get(chart, 0)):
            # kubernetes.core.helm gives helm the namespace through HELM_NAMESPACE; here it is a flag.
            cluster.helm(*shlex.split(record[chart]["command"])[1:], "--namespace", namespace)
            # a rolled Deployment's old pod lingers a moment after helm --wait returns
            cluster.wait("old pods gone", lambda ns=namespace: all(
                not p["metadata"].get("deletionTimestamp") for p in cluster.pods(ns)), timeout=60)
            result["snapshots"].append(snapshot(cluster, namespace))
        result["history"] = cluster.history(release, namespace)
    return out


def assert_second_run_changes_nothing(result: dict[str, Any], chart: str) -> dict[str, Any]:
    """The role's second run (kubernetes.core.helm, same values) does not call helm upgrade at
    all: no new revision, nothing touched. A plain `helm upgrade` with the same values makes a new
    revision each time; it changes no workload, except once for z2jh: its install hashed
    throwaway tokens into the hub's and proxy's checksum/* annotations (templates/hub/
    _helpers-passwords.tpl generates a random token at every include while no Secret exists),
    so the first upgrade after the install rolls the hub and proxy pods once; a second upgrade
    changes nothing."""
    assert result["module_failed"] is not True, result
    assert result["module_changed"] is False, f"{chart}: kubernetes.core.helm would upgrade again with the same values"
    assert result["revisions_after_module"] == result["revisions_before"] == [1]
    snaps = result["snapshots"]
    assert differences(snaps[0], snaps[1]) == {}
    upgrades = len(snaps) - 2
    history = [(h["revision"], h["status"]) for h in result["history"]]
    assert history == [(r, "superseded") for r in range(1, upgrades + 1)] + [(upgrades + 1, "deployed")], history
    first = differences(snaps[1], snaps[2]) if upgrades else {}
    if chart == "jupyterhub":
        assert not [k for k in first if k.endswith("#template-without-checksums")], first
        assert {k for k in first if not k.startswith(("pod/hub-", "pod/proxy-"))} <= {"deployments/hub", "deployments/proxy"}, first
    else:
        assert first == {}, first
    for before, after in zip(snaps[2:], snaps[3:]):
        assert differences(before, after) == {}, differences(before, after)
    return {"first_upgrade": sorted(first), "history": history}


def object_when(cluster: SiteCluster, path: str, predicate: Any, what: str, timeout: float = 90) -> dict[str, Any]:
    """Wait until the object at ``path`` satisfies ``predicate``; return it."""
    def get() -> dict[str, Any] | None:
        obj = cluster.get(path)
        return obj if predicate(obj) else None
    return cluster.wait(what, get, timeout)
