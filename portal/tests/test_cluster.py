"""Translation of Pod JSON into observations, on pods a real API server stored, scheduled and ran
(KubeSpawner-shaped single-user pods, a hub pod, a finished pod, other namespaces)."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from kube import A100, singleuser_pod
from labhub_portal.cluster import parse_quantity, parse_time, pods_to_observations


@pytest.mark.parametrize("raw, expected", [
    ("500m", Decimal("0.5")), ("2", Decimal(2)), ("1Gi", Decimal(2**30)), ("512Mi", Decimal(2**29)),
    ("1G", Decimal(10**9)), ("1e3", Decimal(1000)), ("100k", Decimal(100000)), (3, Decimal(3)),
    ("", None), ("abc", None), ("1Qi", None), (None, None),
])
def test_parse_quantity(raw, expected):
    assert parse_quantity(raw) == expected


def test_observations_from_pods_of_the_real_api(kube, kube_cluster):
    gpu = singleuser_pod("ann@example.org", "train", gpus=2, gpu_product=A100, cpu_guarantee="1500m", cpu_limit="2",
                         mem_guarantee="3Gi", mem_limit="3Gi", profile="a100")
    limits_only = singleuser_pod("lim", gpus=1)
    limits_only["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1", "cpu": "2"}}
    sidecar = singleuser_pod("side", cpu_guarantee="1")
    sidecar["spec"]["containers"].insert(0, {"name": "sidecar", "image": "busybox:1.36",
                                             "resources": {"requests": {"cpu": "250m"}}})
    no_user = singleuser_pod("anon")
    del no_user["metadata"]["annotations"]["hub.jupyter.org/username"]
    del no_user["metadata"]["labels"]["hub.jupyter.org/username"]
    hub = singleuser_pod("hub", component="hub")
    hub["metadata"]["name"] = "hub-7d9f8c6b5-x2x4z"
    pending = singleuser_pod("carol", gpus=1, gpu_product="NVIDIA-B200")  # no such GPU here: never scheduled
    names = [kube.create_pod(p) for p in (gpu, limits_only, sidecar, no_user, hub)]
    kube.create_pod(pending)
    other = kube.other_namespace()
    kube.create_pod(singleuser_pod("eve"), namespace=other)
    # a finished pod: KWOK completes pods of a Job, as a kubelet would once the process exits 0
    job_pod = singleuser_pod("done")
    job = {"metadata": {"name": "done"}, "spec": {"backoffLimit": 0, "template": {
        "metadata": {"labels": job_pod["metadata"]["labels"], "annotations": job_pod["metadata"]["annotations"]},
        "spec": dict(job_pod["spec"], restartPolicy="Never")}}}
    kube.admin.must("POST", f"/apis/batch/v1/namespaces/{kube.name}/jobs", job, what=f"create Job '{kube.name}/done'")
    running = kube.wait_running(*names)
    kube.wait_count(1, phase="Succeeded", timeout=60)

    pods = kube.pods() + kube.admin.must("GET", f"/api/v1/namespaces/{other}/pods", what="list pods")["items"]
    pods.append(copy.deepcopy(running[names[0]]))  # the same pod twice (uid): one observation
    assert {p["status"]["phase"] for p in pods} == {"Running", "Pending", "Succeeded"}
    obs = {o.pod_name: o for o in pods_to_observations(pods, kube_cluster.node_labels(), kube.name)}

    ann_name, lim_name, side_name = names[:3]
    assert set(obs) == {ann_name, lim_name, side_name}  # not: no user, hub, pending, finished, other namespace
    ann = obs[ann_name]
    assert ann_name.startswith("jupyter-ann-example-org---") and ann_name.endswith("--train")  # KubeSpawner's slug
    assert gpu["metadata"]["labels"]["hub.jupyter.org/username"] != "ann@example.org"  # escaped label
    assert (ann.username, ann.server_name, ann.profile) == ("ann@example.org", "train", "a100")
    assert (ann.cpu_request, ann.memory_request, ann.gpu_request, ann.gpu_limit) == (1.5, 3 * 2**30, 2, 2)
    # node and GPU model from the real scheduling and the node's GPU Feature Discovery label
    assert ann.node == "gpu-a100-0" == running[ann_name]["spec"]["nodeName"] and ann.gpu_model == A100
    assert ann.image.startswith("quay.io/jupyter/") and ann.ready and ann.phase == "Running"
    assert ann.started_at == parse_time(running[ann_name]["status"]["startTime"])
    assert ann.pod_uid == running[ann_name]["metadata"]["uid"]

    lim = obs[lim_name]
    # The API server defaults requests from limits: the fake this replaced returned no CPU request here.
    assert (lim.gpu_request, lim.gpu_limit, lim.cpu_request, lim.cpu_limit) == (1, 1, 2.0, 2.0)
    assert lim.node in ("gpu-a100-0", "gpu-h100-0")  # tolerates the GPU taint, no node selector
    assert lim.gpu_model == kube_cluster.node_labels()[lim.node]["nvidia.com/gpu.product"]
    side = obs[side_name]
    assert side.cpu_request == 1.25 and side.image.startswith("quay.io/")  # the notebook container's image
    assert side.node == "cpu-0" and side.gpu_model is None  # no GPU toleration: the CPU node

    # without node labels (no node reader): the GPU model comes from the pod's nodeSelector, else none
    blind = {o.pod_name: o for o in pods_to_observations(pods, {}, kube.name)}
    assert blind[ann_name].gpu_model == A100 and blind[lim_name].gpu_model is None


async def test_pod_list_comes_from_a_watch_and_falls_back_to_listing(kube, kube_faults, settings_factory):
    """/api/pods answers from the pod watch (PodWatch: one list, then the real API server's events
    through the fault injector): pods appear and go without a list per request; when the API server
    fails the watch is out of sync and each request lists (503 naming the cause), and once it
    answers again the watch lists once and is back in sync."""
    import asyncio

    from testlib import AUTH, async_wait_for, running_app

    def lists() -> int:  # plain GETs of the pod collection through the injector (not watches)
        return sum(1 for _mode, method, path in kube_faults.requests
                   if method == "GET" and path.startswith(f"/api/v1/namespaces/{kube.name}/pods?")
                   and "watch=" not in path and "limit=1" not in path)

    async with running_app(settings_factory()) as (app, client):
        watch = app.state.pod_watch
        task = asyncio.create_task(watch.run_forever())
        try:
            async def names() -> list[str]:
                resp = await client.get("/api/pods", headers=AUTH)
                assert resp.status_code == 200, resp.text
                return [p["pod_name"] for p in resp.json()["pods"]]

            async def synced() -> bool:
                return watch.synced

            assert await async_wait_for(synced, 10)
            kube.start(singleuser_pod("alice"), singleuser_pod("bob", "gpu"))

            async def both() -> bool:
                return await names() == ["jupyter-alice", "jupyter-bob--gpu"]

            assert await async_wait_for(both, 10)
            before = lists()
            for _ in range(20):
                assert await names() == ["jupyter-alice", "jupyter-bob--gpu"]
            assert lists() == before == 1 and watch.lists == 1

            kube.stop_server("jupyter-alice")

            async def alice_gone() -> bool:
                return await names() == ["jupyter-bob--gpu"]

            assert await async_wait_for(alice_gone, 15)

            kube_faults.mode = "error"

            async def out_of_sync() -> bool:
                return not watch.synced

            assert await async_wait_for(out_of_sync, 10)
            resp = await client.get("/api/pods", headers=AUTH)
            assert resp.status_code == 503 and "injected by the test fault injector" in resp.text, resp.text
            status = (await client.get("/api/status", headers=AUTH)).json()["pod_watch"]
            assert status["synced"] is False and status["error"]

            kube_faults.mode = "ok"
            assert await async_wait_for(synced, 40)
            assert await names() == ["jupyter-bob--gpu"] and watch.lists == 2
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
