"""A small site with every optional feature on (sites.features_inventory, derived from
inventories/example): a control-plane node and two DGX H100 nodes on InfiniBand, gpu04 split into
MIG slices and reserved by a taint; GPU time-slicing (4 replicas), MIG strategy mixed, SR-IOV, the
hub as a NodePort with TLS from files, the dynamic profile, no image pre-pulling. Real Helm, the
real charts with the roles' values; the operators' controllers SIMULATED (operators.py)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from checks import (assert_second_run_changes_nothing, check_gpu_release, check_hub, gpu_resources, rdma_resource, rerun, unpinned,
                    wait_gpu_converged, wait_network_converged)
from cluster import SiteCluster
from deploy import site_cluster

pytestmark = pytest.mark.kube


@pytest.fixture(scope="module")
def features(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteCluster]:
    yield from site_cluster("features", request, tmp_path_factory)


def test_time_slicing_and_mig_mixed_resources(features: SiteCluster) -> None:
    found = check_gpu_release(features)
    spec = found["policy"]["spec"]
    assert spec["mig"]["strategy"] == "mixed"
    assert spec["devicePlugin"]["config"] == {"name": "labhub-time-slicing", "default": "any"}
    wait_gpu_converged(features)
    # gpu01: 8 H100 with MIG off (all-disabled), each advertised 4 times.
    features.wait("32 shared GPUs on gpu01", lambda: gpu_resources(features, "gpu01").get("nvidia.com/gpu") == "32")
    labels = features.node("gpu01")["metadata"]["labels"]
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3-SHARED"
    assert labels["nvidia.com/gpu.replicas"] == "4" and labels["nvidia.com/gpu.sharing-strategy"] == "time-slicing"
    assert labels["nvidia.com/mig.strategy"] == "mixed"
    # gpu04: all-1g.10gb, strategy mixed: 7 MIG devices per H100 as their own resource, no full GPU.
    features.wait("MIG devices on gpu04", lambda: gpu_resources(features, "gpu04").get("nvidia.com/mig-1g.10gb") == "56")
    assert gpu_resources(features, "gpu04")["nvidia.com/gpu"] == "0"


def test_sriov_network_operator_and_rdma_on_the_reserved_node(features: SiteCluster) -> None:
    net = features.site.network
    ns = net["namespace"]
    assert net["values"]["sriovNetworkOperator"] == {"enabled": True}
    assert features.deployment_available(ns, f"{net['release']}-sriov-network-operator")
    config = features.get(f"/apis/sriovnetwork.openshift.io/v1/namespaces/{ns}/sriovoperatorconfigs/default")
    # the config daemon waits for the Network Operator's own node label (set on NVIDIA NIC nodes)
    assert config["spec"]["configDaemonNodeSelector"]["network.nvidia.com/operator.mofed.wait"] == "false"
    # the metrics exporter (no pinned image in the bundle) is off, not left to the operator's default
    assert config["spec"]["featureGates"] == {"metricsExporter": False}
    images = features.release_images(net["release"], ns)
    assert "nvcr.io/nvidia/mellanox/sriov-network-operator:network-operator-v25.7.0" in images
    assert not unpinned(images), unpinned(images)
    wait_network_converged(features)
    resource, count = rdma_resource(features)
    assert {h: features.node(h)["status"]["allocatable"].get(resource) for h in ("gpu01", "gpu04")} == {
        "gpu01": count, "gpu04": count}


def test_hub_nodeport_with_tls_and_no_prepuller(features: SiteCluster) -> None:
    values = features.site.hub_values
    assert values["proxy"]["https"]["type"] == "secret" and values["prePuller"]["continuous"]["enabled"] is False
    placed = check_hub(features)
    assert placed["hub"] != "gpu04"
    ns = features.site.hub_namespace
    tls = features.get(f"/api/v1/namespaces/{ns}/secrets/labhub-hub-tls")
    assert tls["type"] == "kubernetes.io/tls"
    proxy = features.pods(ns, "component=proxy")[0]
    assert any((v.get("secret") or {}).get("secretName") == "labhub-hub-tls" for v in proxy["spec"]["volumes"])
    svc = features.get(f"/api/v1/namespaces/{ns}/services/proxy-public")
    assert {p["name"]: p["nodePort"] for p in svc["spec"]["ports"]} == {"http": 30080, "https": 30443}


def test_a_second_run_with_the_same_values_changes_nothing(features: SiteCluster) -> None:
    releases = [("gpu-operator", features.site.gpu_role["release"], features.site.gpu_role["namespace"]),
                ("network-operator", features.site.network["release"], features.site.network["namespace"]),
                ("jupyterhub", features.notes["record"]["hub_release"], features.site.hub_namespace)]
    # the roles' own second run only (plain `helm upgrade` revisions: test_site_example.py)
    results = rerun(features, releases, {})
    for chart, result in results.items():
        assert_second_run_changes_nothing(result, chart)
