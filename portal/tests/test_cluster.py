"""Pure translation of Pod JSON (real-shaped, from the kubernetes client models) into observations."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fakes import make_node, make_pod
from labhub_portal.cluster import parse_quantity, pods_to_observations


@pytest.mark.parametrize("raw, expected", [
    ("500m", Decimal("0.5")), ("2", Decimal(2)), ("1Gi", Decimal(2**30)), ("512Mi", Decimal(2**29)),
    ("1G", Decimal(10**9)), ("1e3", Decimal(1000)), ("100k", Decimal(100000)), (3, Decimal(3)),
    ("", None), ("abc", None), ("1Qi", None), (None, None),
])
def test_parse_quantity(raw, expected):
    assert parse_quantity(raw) == expected


def test_observations_from_pod_json():
    gpu = make_pod("jupyter-ann", "ann@example.org", node="gpu-1", gpu=2, cpu="1500m", memory="3Gi",
                   server_name="train", profile="a100")
    gpu["metadata"]["labels"]["hub.jupyter.org/username"] = "ann-40example-2eorg"  # escaped label
    limits_only = make_pod("jupyter-lim", "lim")
    limits_only["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1", "cpu": "2"}}
    sidecar = make_pod("jupyter-side", "side", cpu="1")
    sidecar["spec"]["containers"].insert(0, {"name": "sidecar", "image": "busybox",
                                             "resources": {"requests": {"cpu": "250m"}}})
    finished = make_pod("jupyter-done", "done", phase="Succeeded")
    no_user = make_pod("jupyter-anon", "x")
    del no_user["metadata"]["annotations"]["hub.jupyter.org/username"]
    del no_user["metadata"]["labels"]["hub.jupyter.org/username"]
    hub = make_pod("hub-1", "hub", component="hub")
    other_ns = make_pod("jupyter-o", "o", namespace="elsewhere")
    pods = [gpu, limits_only, sidecar, finished, no_user, hub, other_ns, gpu]  # duplicate uid once
    obs = {o.pod_name: o for o in pods_to_observations(pods, {"gpu-1": make_node("gpu-1", "A100")["metadata"]["labels"]},
                                                         "jhub")}
    assert set(obs) == {"jupyter-ann", "jupyter-lim", "jupyter-side"}
    ann = obs["jupyter-ann"]
    assert (ann.username, ann.server_name, ann.profile) == ("ann@example.org", "train", "a100")
    assert (ann.cpu_request, ann.memory_request, ann.gpu_request, ann.gpu_model) == (1.5, 3 * 2**30, 2, "A100")
    assert ann.image.startswith("quay.io/jupyter/") and ann.ready and ann.started_at.tzinfo is not None
    assert obs["jupyter-lim"].gpu_request == 1 and obs["jupyter-lim"].cpu_request is None
    assert obs["jupyter-lim"].gpu_model is None  # unknown node, no nodeSelector
    side = obs["jupyter-side"]
    assert side.cpu_request == 1.25 and side.image.startswith("quay.io/")  # the notebook container's image
