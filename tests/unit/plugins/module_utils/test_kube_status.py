# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Why Kubernetes objects are not ready (module_utils/_kube_status.py), as data, and the filters
the roles call (plugins/filter/kube_status.py)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.labhub.platform.plugins.filter import kube_status as filters
from ansible_collections.labhub.platform.plugins.module_utils import _kube_status as ks


def node(name, ready=True, allocatable=None, labels=None):
    return {"metadata": {"name": name, "labels": labels or {}},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "allocatable": allocatable or {}}}


def pod(name, phase="Running", ready=True, node_name="n1", conditions=(), containers=()):
    conds = [{"type": "Ready", "status": "True" if ready else "False"}] + list(conditions)
    spec = {"nodeName": node_name} if node_name else {}
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": spec,
            "status": {"phase": phase, "conditions": conds, "containerStatuses": list(containers)}}


UNSCHEDULABLE = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}


def test_pending_pod_names_the_scheduler_reason_and_no_node():
    p = pod("smoke-x", phase="Pending", ready=False, node_name=None, conditions=[UNSCHEDULABLE])
    assert ks.pod_reason(p) == ("pod smoke-x Pending (PodScheduled Unschedulable: 0/3 nodes are available: "
                                "3 Insufficient nvidia.com/gpu.)")


def test_containers_waiting_and_failed_are_named_with_exit_codes_success_is_not():
    p = pod("op-1", ready=False, containers=[
        {"name": "a", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}},
        {"name": "b", "state": {"terminated": {"reason": "Error", "exitCode": 1}}},
        {"name": "c", "state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
        {"name": "d", "state": {"running": {}}}])
    text = ks.pod_reason(p)
    assert "container a waiting: ImagePullBackOff no such image" in text
    assert "container b terminated: Error (exit code 1)" in text
    assert "container c" not in text and "container d" not in text
    assert text.endswith(" on node n1")


def test_init_containers_are_read_too():
    p = pod("x", phase="Pending", ready=False)
    p["status"]["initContainerStatuses"] = [{"name": "init", "state": {"waiting": {"reason": "PodInitializing"}}}]
    assert "container init waiting: PodInitializing" in ks.pod_reason(p)


def test_pod_without_status_is_unknown_not_an_error():
    assert ks.pod_reason({"metadata": {"name": "p"}}) == "pod p Unknown"


def test_job_failed_condition_comes_first_then_each_pod():
    job = {"status": {"conditions": [
        {"type": "Complete", "status": "False"},
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}}
    out = ks.job_reasons(job, [pod("p", phase="Failed", ready=False)])
    assert out == ["Job BackoffLimitExceeded: Job has reached the specified backoff limit", "pod p Failed on node n1"]
    assert ks.job_reasons({}, []) == []


@pytest.mark.parametrize("kind,spec,status,expected", [
    ("Deployment", {"replicas": 1}, {"availableReplicas": 1, "updatedReplicas": 1}, None),
    ("Deployment", {"replicas": 2}, {"availableReplicas": 1, "updatedReplicas": 2}, "Deployment ns/w: 1 of 2 available, 2 updated"),
    ("Deployment", {}, {}, "Deployment ns/w: 0 of 1 available, 0 updated"),  # replicas defaults to 1
    ("Deployment", {"replicas": 0}, {}, None),
    ("DaemonSet", {}, {"desiredNumberScheduled": 3, "numberReady": 3, "updatedNumberScheduled": 3}, None),
    ("DaemonSet", {}, {"desiredNumberScheduled": 3, "numberReady": 3, "updatedNumberScheduled": 2},
     "DaemonSet ns/w: 3 of 3 scheduled pods ready, 2 updated"),
    ("DaemonSet", {}, {"desiredNumberScheduled": 0}, None),  # no node selected: nothing to wait for
    ("StatefulSet", {"replicas": 1}, {"readyReplicas": 0}, "StatefulSet ns/w: 0 of 1 ready"),
    ("StatefulSet", {"replicas": 1}, {"readyReplicas": 1}, None),
])
def test_workloads(kind, spec, status, expected):
    obj = {"metadata": {"name": "w", "namespace": "ns"}, "spec": spec, "status": status}
    assert ks.not_ready([obj], kind) == ([expected] if expected else [])


def test_pods_ready_or_succeeded_are_fine_others_are_reported():
    pods = [pod("ok"), pod("done", phase="Succeeded", ready=False), pod("bad", ready=False)]
    assert ks.not_ready(pods, "Pod") == ["pod bad Running on node n1"]


def test_nodes_not_ready_are_named():
    assert ks.not_ready([node("a"), node("b", ready=False), {"metadata": {"name": "c"}}], "Node") == ["b", "c"]


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="Service"):
        ks.not_ready([], "Service")


def test_nodes_without_ready_pod_by_prefix():
    nodes = [node("n1"), node("n2"), node("n3")]
    pods = [pod("calico-node-a", node_name="n1"), pod("calico-node-b", node_name="n2", ready=False),
            pod("other-c", node_name="n3")]
    assert ks.nodes_without_ready_pod(nodes, pods, "calico-node-") == ["n2", "n3"]
    assert ks.nodes_without_ready_pod(nodes, pods) == ["n2"]


def test_nodes_without_resource_counts_missing_nodes_and_non_numbers_as_zero():
    nodes = [node("a", allocatable={"rdma/ib": "1"}), node("b", allocatable={"rdma/ib": "0"}),
             node("c", allocatable={"rdma/ib": "1k"})]
    assert ks.nodes_without_resource(nodes, ["a", "b", "c", "gone"], "rdma/ib") == ["b", "c", "gone"]


def test_resource_report_names_host_node_count_pod_and_label():
    label = {"feature.node.kubernetes.io/pci-15b3.present": "true"}
    nodes = [node("n1", allocatable={"rdma/ib": "1"}, labels=label), node("n2", labels=label), node("n3")]
    pods = [pod("dp-1", node_name="n1"), pod("dp-2", node_name="n2", ready=False)]
    rows = ks.resource_report(nodes, pods, {"h1": "n1", "h2": "n2", "h3": "n3"}, "rdma/ib", "dp-", "pci-15b3")
    assert rows == ["h2 (node n2: rdma/ib=0, device plugin pod not ready, pci-15b3 label true)",
                    "h3 (node n3: rdma/ib=0, device plugin pod absent, pci-15b3 label absent)"]


def test_filters_refuse_what_is_not_a_list_of_objects():
    with pytest.raises(AnsibleFilterError, match="kube_not_ready: input must be a list"):
        filters.kube_not_ready({"items": []}, "Pod")
    with pytest.raises(AnsibleFilterError, match="kube_not_ready: not a kind"):
        filters.kube_not_ready([], "Secret")
    with pytest.raises(AnsibleFilterError, match="hosts must map"):
        filters.kube_resource_report([], [], ["h1"], "r", "p", "l")
    assert filters.kube_not_ready(None, "Pod") == []


def test_each_filter_is_registered_and_documented():
    """Every filter the module offers has its documentation file (ansible-doc reads it); the
    roles' own runs (tests/simulator) render them in real playbooks."""
    import os
    names = filters.FilterModule().filters()
    here = os.path.dirname(filters.__file__)
    assert sorted(names) == ["kube_nodes_without_ready_pod", "kube_nodes_without_resource", "kube_not_ready",
                             "kube_reasons", "kube_resource_report"]
    for name in names:
        assert os.path.isfile(os.path.join(here, name + ".yml")), name
