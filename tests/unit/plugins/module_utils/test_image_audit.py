"""plugins/module_utils/_image_audit.py as data: the rules the image audit copies from the pinned
operators (GPU Operator v25.10.1, Network Operator 25.7.0, SR-IOV Network Operator) and the
comparison with the bundle."""
from __future__ import annotations

from ansible_collections.labhub.platform.plugins.module_utils import _image_audit as a
from ansible_collections.labhub.platform.plugins.module_utils._bundle import manifest_pause

NODE22 = {"name": "gpu01", "os_id": "ubuntu", "os_version": "22.04", "kernel": "5.15.0-105-generic", "arch": "x86_64"}
NODE24 = {"name": "gpu02", "os_id": "ubuntu", "os_version": "24.04", "kernel": "6.8.0-45-generic", "arch": "aarch64"}


def spec(**parts):
    return {"kind": "ClusterPolicy", "metadata": {"name": "cluster-policy"}, "spec": parts}


def img(repo, image, version, **extra):
    return {"repository": repo, "image": image, "version": version, **extra}


def test_normalize_short_names_default_tag_and_digest():
    assert a.normalize("traefik") == "docker.io/library/traefik:latest"
    assert a.normalize("calico/node:v3.29.3") == "docker.io/calico/node:v3.29.3"
    assert a.normalize("localhost:5000/x") == "localhost:5000/x:latest"
    assert a.normalize("quay.io/a/b@sha256:abc") == "quay.io/a/b@sha256:abc"
    assert a.normalize(" registry.k8s.io/pause:3.10 ") == "registry.k8s.io/pause:3.10"


def test_image_path_as_the_operators_build_it():
    assert a.image_path(img("nvcr.io/nvidia", "driver", "580")) == "nvcr.io/nvidia/driver:580"
    assert a.image_path(img("nvcr.io/nvidia", "driver", "sha256:ff")) == "nvcr.io/nvidia/driver@sha256:ff"
    assert a.image_path({"image": "quay.io/x/y:1"}) == "quay.io/x/y:1"
    assert a.image_path({}) is None


def test_cluster_policy_defaults_sandbox_and_driver_tags():
    policy = spec(
        driver=img("nvcr.io/nvidia", "driver", "580.105.08", enabled=True,
                   manager=img("nvcr.io/nvidia/cloud-native", "k8s-driver-manager", "v0.9.1")),
        toolkit=img("nvcr.io/nvidia/k8s", "container-toolkit", "v1.18.1"),       # enabled absent: on
        dcgm=img("nvcr.io/nvidia/cloud-native", "dcgm", "4.4.2", enabled=False),
        nodeStatusExporter=img("nvcr.io/nvidia", "gpu-operator", "v25.10.1"),   # absent: off
        vgpuManager=img("nvcr.io/nvidia", "vgpu-manager", "1", enabled=True),   # sandbox off
        gds=img("nvcr.io/nvidia/cloud-native", "nvidia-fs", "2.26.6", enabled=True),
        validator=img("nvcr.io/nvidia", "gpu-operator", "v25.10.1"),
    )
    uses = a.cluster_policy_images(policy, [NODE22, NODE24])
    refs = {r for r, _s in uses}
    assert refs == {
        "nvcr.io/nvidia/driver:580.105.08-ubuntu22.04", "nvcr.io/nvidia/driver:580.105.08-ubuntu24.04",
        "nvcr.io/nvidia/cloud-native/nvidia-fs:2.26.6-ubuntu22.04", "nvcr.io/nvidia/cloud-native/nvidia-fs:2.26.6-ubuntu24.04",
        "nvcr.io/nvidia/cloud-native/k8s-driver-manager:v0.9.1", "nvcr.io/nvidia/k8s/container-toolkit:v1.18.1",
        "nvcr.io/nvidia/gpu-operator:v25.10.1"}
    assert ("nvcr.io/nvidia/driver:580.105.08-ubuntu24.04", "ClusterPolicy cluster-policy: driver (node gpu02)") in uses
    # sandbox workloads on: the vGPU manager runs, its tag with the node's OS
    policy["spec"]["sandboxWorkloads"] = {"enabled": True}
    assert "nvcr.io/nvidia/vgpu-manager:1-ubuntu22.04" in {r for r, _s in a.cluster_policy_images(policy, [NODE22])}
    # precompiled: <version>-<kernel>-<os tag>; driver off: no driver, manager or gds
    policy["spec"]["driver"]["usePrecompiled"] = True
    assert "nvcr.io/nvidia/driver:580.105.08-5.15.0-105-generic-ubuntu22.04" in {
        r for r, _s in a.cluster_policy_images(policy, [NODE22])}
    policy["spec"]["driver"]["enabled"] = False
    refs = {r for r, _s in a.cluster_policy_images(policy, [NODE22])}
    assert not [r for r in refs if "driver" in r or "nvidia-fs" in r]


def test_nic_cluster_policy_nested_specs_and_ofed_tag():
    policy = {"kind": "NicClusterPolicy", "metadata": {"name": "nic-cluster-policy"}, "spec": {
        "ofedDriver": img("nvcr.io/nvidia/mellanox", "doca-driver", "doca3.1.0-25.07-0.9.7.0-0"),
        "rdmaSharedDevicePlugin": img("nvcr.io/nvidia/mellanox", "k8s-rdma-shared-dev-plugin", "v1", config="{}"),
        "secondaryNetwork": {"multus": img("nvcr.io/nvidia/mellanox", "multus-cni", "v2"),
                             "ipoib": img("nvcr.io/nvidia/mellanox", "ipoib-cni", "v3")},
        "tolerations": [{"key": "x"}]}}
    uses = a.nic_cluster_policy_images(policy, [NODE22, NODE24])
    assert {r for r, _s in uses} == {
        "nvcr.io/nvidia/mellanox/doca-driver:doca3.1.0-25.07-0.9.7.0-0-ubuntu22.04-amd64",
        "nvcr.io/nvidia/mellanox/doca-driver:doca3.1.0-25.07-0.9.7.0-0-ubuntu24.04-arm64",
        "nvcr.io/nvidia/mellanox/k8s-rdma-shared-dev-plugin:v1",
        "nvcr.io/nvidia/mellanox/multus-cni:v2", "nvcr.io/nvidia/mellanox/ipoib-cni:v3"}
    assert ("nvcr.io/nvidia/mellanox/multus-cni:v2", "NicClusterPolicy nic-cluster-policy: secondaryNetwork.multus") in uses


def deployment(env):
    return {"kind": "Deployment", "metadata": {"name": "op", "namespace": "ns"}, "spec": {"template": {"spec": {
        "initContainers": [{"name": "init", "image": "busybox:1.28.4"}],
        "containers": [{"name": "op", "image": "quay.io/op:1", "env": env}]}}}}


def test_object_images_containers_env_and_feature_gates():
    env = [{"name": "SRIOV_CNI_IMAGE", "value": "nvcr.io/x/sriov-cni:1"},
           {"name": "METRICS_EXPORTER_IMAGE", "value": "ghcr.io/x/metrics-exporter"},
           {"name": "OTHER", "value": "nvcr.io/not/an-image-var:1"}, {"name": "EMPTY_IMAGE", "value": ""}]
    config = {"kind": "SriovOperatorConfig", "spec": {"featureGates": {"metricsExporter": False}}}
    skip = a.feature_gated_env([deployment(env), config])
    uses = a.object_images(deployment(env), "chart x", skip)
    assert {r for r, _s in uses} == {"docker.io/library/busybox:1.28.4", "quay.io/op:1", "nvcr.io/x/sriov-cni:1"}
    assert ("docker.io/library/busybox:1.28.4", "chart x: Deployment ns/op, initContainer init") in uses
    config["spec"]["featureGates"]["metricsExporter"] = True
    uses = a.object_images(deployment(env), "chart x", a.feature_gated_env([config]))
    assert "ghcr.io/x/metrics-exporter:latest" in {r for r, _s in uses}
    cron = {"kind": "CronJob", "metadata": {"name": "c"}, "spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "a.io/c:1"}]}}}}}}
    assert a.object_images(cron, "m") == [("a.io/c:1", "m: CronJob c, container c")]
    assert a.object_images({"kind": "ConfigMap", "data": {"image": "x"}}, "m") == []


def test_values_and_config_images():
    values = {"singleuser": {"image": {"name": "quay.io/jupyterhub/k8s-singleuser-sample", "tag": "4.4.0"},
                             "profileList": [{"kubespawner_override": {"image": "nvcr.io/nvidia/pytorch:25.01"}}]},
              "proxy": {"chp": {"image": {"name": "quay.io/jupyterhub/configurable-http-proxy"}}}}
    assert sorted(a.values_images(values, "v")) == [
        ("nvcr.io/nvidia/pytorch:25.01", "v: singleuser.profileList[0].kubespawner_override.image"),
        ("quay.io/jupyterhub/configurable-http-proxy:latest", "v: proxy.chp.image"),
        ("quay.io/jupyterhub/k8s-singleuser-sample:4.4.0", "v: singleuser.image")]
    config = {"spawn": {"default_image": "a.io/b:1", "profiles": [{"slug": "x", "image": "a.io/c:2"}], "imagery": "no"}}
    assert a.config_images(config, "hub") == [
        ("a.io/b:1", "hub: spawn.default_image"), ("a.io/c:2", "hub: spawn.profiles[0].image")]


def test_microk8s_kube_version_and_pause():
    manifest = {"snaps": [{"name": "core22", "channel": "latest/stable"}, {"name": "microk8s", "channel": "1.36/stable"}],
                "images": [{"ref": "registry.k8s.io/pause:3.10.1", "used_by": ["z2jh"]},
                           {"ref": "registry.k8s.io/pause:3.10", "used_by": ["microk8s"]}]}
    assert a.kube_version(manifest) == "1.36.0"
    assert a.kube_version({"snaps": [{"name": "microk8s", "channel": "latest/edge"}]}) == ""
    assert manifest_pause(manifest) == "registry.k8s.io/pause:3.10"
    assert manifest_pause({"images": [{"ref": "registry.k8s.io/pause:3.10.1", "used_by": ["z2jh"]}]}) == ""
    uses = a.microk8s_images(["dns"], "registry.k8s.io/pause:3.10")
    assert ("docker.io/coredns/coredns:1.14.3", "MicroK8s: addon dns") in uses
    assert len([u for u in uses if u[1] == "MicroK8s: calico"]) == 3
    assert not [u for u in uses if "hostpath" in u[0]]


def test_bundle_comparison_statuses(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.tar").write_bytes(b"")
    manifest = {"images": [{"ref": "quay.io/a:1", "file": "images/a.tar"},
                           {"ref": "quay.io/b:2", "file": "images/b.tar", "digest": "sha256:" + "0" * 64}]}
    bundle = a.bundle_images(manifest, str(tmp_path))
    images, missing = a.audit([("quay.io/a:1", "x"), ("quay.io/a:1", "y"), ("quay.io/a:1", "x"),
                               ("quay.io/b@sha256:" + "0" * 64, "z"), ("quay.io/c:3", "w")], bundle)
    assert [(i["ref"], i["status"], i["sources"]) for i in images] == [
        ("quay.io/a:1", "in bundle", ["x", "y"]),
        ("quay.io/b@sha256:" + "0" * 64, "archive missing", ["z"]),
        ("quay.io/c:3", "not in the manifest", ["w"])]
    assert [m["ref"] for m in missing] == ["quay.io/b@sha256:" + "0" * 64, "quay.io/c:3"]
    table = a.table(images)
    assert table[0].startswith("STATUS") and "(+1 more)" in table[1] and len(table) == 4
