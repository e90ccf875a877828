"""Profiles, team mapping, dynamic form limits, time limit, GPU/CPU env and /dev/shm
on a real KubeSpawner 7.0.0 instance (LabhubKubeSpawner).

No Kubernetes API server is involved: KubeSpawner loads a kubeconfig at
construction (tests/kubeconfig-no-cluster.yaml points at an address where
nothing listens) and builds clients lazily; rendering the form, parsing it,
load_user_options and get_pod_manifest are pure and never call the API.  The
capacity of nodes for the dynamic form comes from the *static* capacity source
(a product feature) or, for KubernetesCapacitySource's parsing of allocatable
values, from kubernetes_asyncio V1Node model objects built in the test (a
labelled fake of `list_node`). The same source listing the nodes of a REAL API
server, and KubeSpawner creating, scheduling and deleting pods there, run in
tests/test_spawn_kube.py.
"""

import asyncio
import os
from pathlib import Path

import pytest
from kubernetes_asyncio.client import ApiClient, V1Node, V1NodeSpec, V1NodeStatus, V1ObjectMeta

from labhub_hub import profiles as P
from labhub_hub.config import validate
from labhub_hub.profiles import OptionsError

KUBECONFIG = Path(__file__).with_name("kubeconfig-no-cluster.yaml")


class Group:
    def __init__(self, name):
        self.name = name


class User:
    def __init__(self, name, groups=(), admin=False):
        self.name = name
        self.id = abs(hash(name)) % 10000
        self.admin = admin
        self.groups = [Group(g) for g in groups]
        self.url = f"/user/{name}/"


def labhub_config(**spawn_overrides):
    spawn = {
        "default_image": "quay.io/jupyter/scipy-notebook:2025-01-01",
        "gpu": {"enabled": True},
        "session": {"choices_hours": [1, 2, 4, 8, 24], "default_hours": 4, "max_hours": 24},
        "profiles": [
            {"slug": "small", "display_name": "Small CPU", "cpu_guarantee": "500m", "cpu_limit": 2,
             "mem_guarantee": "1Gi", "mem_limit": "4Gi", "max_session_hours": 8, "default": True},
            {"slug": "gpu", "display_name": "One GPU", "cpu_limit": 8, "mem_limit": "32Gi", "gpu": 1,
             "image": "quay.io/jupyter/pytorch-notebook:cuda12-2025-01-01",
             "node_selector": {"labhub.io/gpu": "true"},
             "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
             "max_session_hours": 24, "shm_size": "8Gi"},
        ],
        "dynamic": {
            "enabled": True,
            "images": ["quay.io/jupyter/scipy-notebook:2025-01-01", "quay.io/jupyter/pytorch-notebook:cuda12-2025-01-01"],
            "capacity_source": "static",
            "nodes": [
                {"name": "node-a", "cpu": 16, "memory": "64Gi", "gpu": 0},
                {"name": "node-gpu", "cpu": "32", "memory": "256Gi", "gpu": 4},
            ],
            "max_cpu": 24,
            "max_gpu": 2,
            "max_session_hours": 12,
        },
        "teams": {"labhub:gpu-team": ["small", "gpu", "custom"], "physics": ["small"]},
        "default_profiles": ["small"],
    }
    spawn.update(spawn_overrides)
    return validate({"test_mode": True, "auth": {"modes": ["dummy"]}, "spawn": spawn})


@pytest.fixture(autouse=True)
def _no_cluster_kubeconfig(monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(KUBECONFIG))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def run(coro):
    return asyncio.run(coro)


async def make_spawner(user, spawn=None, **traits):
    from labhub_hub.spawner import LabhubKubeSpawner

    spawn = spawn or labhub_config()["spawn"]
    return LabhubKubeSpawner(_mock=True, user=user, labhub_spawn=spawn, **traits)


async def form_and_options(user, formdata, spawn=None):
    spawner = await make_spawner(user, spawn)
    html = await spawner.options_form(spawner)
    options = await spawner.run_options_from_form(formdata)
    return spawner, html, options


def pod(spawner):
    async def _go():
        await spawner.load_user_options()
        manifest = await spawner.get_pod_manifest()
        # exactly what kubespawner would send to the API server
        return ApiClient().sanitize_for_serialization(manifest)

    return _go()


# ---------------------------------------------------------------------------
def test_team_mapping_hides_forbidden_profiles_in_form_and_profile_list():
    async def go():
        physics = await make_spawner(User("ann", ["physics"]))
        team = await make_spawner(User("octo", ["labhub:gpu-team"]))
        nobody = await make_spawner(User("zed", []))
        admin = await make_spawner(User("root", [], admin=True))
        html_physics = await physics.options_form(physics)
        html_team = await team.options_form(team)
        assert 'value="small"' in html_physics
        assert 'value="gpu"' not in html_physics and 'value="custom"' not in html_physics
        assert 'value="gpu"' in html_team and 'value="custom"' in html_team
        assert "dynamic_node" in html_team and "dynamic_node" not in html_physics
        assert [p["slug"] for p in physics.profile_list(physics)] == ["small"]
        assert [p["slug"] for p in nobody.profile_list(nobody)] == ["small"]  # default_profiles
        assert [p["slug"] for p in admin.profile_list(admin)] == ["small", "gpu", "custom"]

    run(go())


def test_forged_form_post_for_forbidden_profile_is_refused():
    async def go():
        spawner = await make_spawner(User("ann", ["physics"]))
        with pytest.raises(OptionsError) as err:
            await spawner.run_options_from_form({"profile": ["gpu"], "session_hours": ["1"]})
        assert err.value.status_code == 403
        assert "not available to user 'ann'" in err.value.jupyterhub_message
        # the API path (user_options without the form) is refused in load_user_options too
        spawner.user_options = {"profile": "gpu"}
        with pytest.raises(OptionsError) as err:
            await spawner.load_user_options()
        assert err.value.status_code == 403
        spawner.user_options = {"profile": "no-such"}
        with pytest.raises(OptionsError) as err:
            await spawner.load_user_options()
        assert err.value.status_code == 400

    run(go())


def test_static_profile_resources_in_pod_and_cpu_only_env_and_shm():
    async def go():
        spawner, html, options = await form_and_options(
            User("ann", ["physics"]), {"profile": ["small"], "session_hours": ["2"]}
        )
        assert options == {"profile": "small", "session_hours": "2"}
        spawner.user_options = options
        manifest = await pod(spawner)
        spec = manifest["spec"]
        container = spec["containers"][0]
        assert container["image"] == "quay.io/jupyter/scipy-notebook:2025-01-01"
        assert float(container["resources"]["limits"]["cpu"]) == 2.0
        assert float(container["resources"]["requests"]["cpu"]) == 0.5
        assert int(container["resources"]["limits"]["memory"]) == 4 * 2**30
        assert "nvidia.com/gpu" not in container["resources"]["limits"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["NVIDIA_VISIBLE_DEVICES"] == "void"
        assert env["CUDA_VISIBLE_DEVICES"] == ""
        assert env["LABHUB_SESSION_SECONDS"] == "7200"
        assert spec["activeDeadlineSeconds"] == 7200
        shm = [v for v in spec["volumes"] if v["name"] == "labhub-dshm"]
        assert shm and shm[0]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}  # half of 4Gi
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["labhub-dshm"] == "/dev/shm"

    run(go())


def test_gpu_profile_gets_devices_selector_tolerations_and_no_cuda_blocking():
    async def go():
        spawner = await make_spawner(User("octo", ["labhub:gpu-team"]), environment={"NVIDIA_VISIBLE_DEVICES": "void"})
        spawner.user_options = await spawner.run_options_from_form({"profile": ["gpu"], "session_hours": ["24"]})
        manifest = await pod(spawner)
        spec = manifest["spec"]
        container = spec["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
        assert spec["nodeSelector"] == {"labhub.io/gpu": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert "NVIDIA_VISIBLE_DEVICES" not in env and "CUDA_VISIBLE_DEVICES" not in env
        shm = [v for v in spec["volumes"] if v["name"] == "labhub-dshm"][0]
        assert shm["emptyDir"]["sizeLimit"] == "8Gi"  # the profile's shm_size
        assert spec["activeDeadlineSeconds"] == 24 * 3600

    run(go())


def test_session_hours_above_profile_maximum_is_refused():
    async def go():
        spawner = await make_spawner(User("ann", ["physics"]))
        with pytest.raises(OptionsError) as err:
            await spawner.run_options_from_form({"profile": ["small"], "session_hours": ["24"]})
        assert err.value.status_code == 400 and "maximum of 8 h" in err.value.jupyterhub_message
        html = await spawner.options_form(spawner)
        assert 'value="24"' in html or "at most 8 h" in html  # the form says the maximum
        # no choice -> default (4 h) capped by the profile maximum
        spawner.user_options = {"profile": "small"}
        manifest = await pod(spawner)
        assert manifest["spec"]["activeDeadlineSeconds"] == 4 * 3600

    run(go())


def test_dynamic_form_within_node_capacity():
    async def go():
        user = User("octo", ["labhub:gpu-team"])
        spawner, html, options = await form_and_options(
            user,
            {
                "profile": ["custom"],
                "session_hours": ["8"],
                "dynamic_image": ["quay.io/jupyter/pytorch-notebook:cuda12-2025-01-01"],
                "dynamic_node": ["node-gpu"],
                "dynamic_cpu": ["12"],
                "dynamic_memory": ["48"],
                "dynamic_gpu": ["2"],
            },
        )
        assert 'data-max-cpu="16"' in html and 'data-max-cpu="24"' in html  # node-a, node-gpu capped by max_cpu
        assert 'data-max-gpu="2"' in html  # node-gpu: 4 GPUs, capped by max_gpu 2
        spawner.user_options = options
        manifest = await pod(spawner)
        spec = manifest["spec"]
        container = spec["containers"][0]
        assert container["image"] == "quay.io/jupyter/pytorch-notebook:cuda12-2025-01-01"
        assert float(container["resources"]["limits"]["cpu"]) == 12.0
        assert int(container["resources"]["limits"]["memory"]) == 48 * 2**30
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
        assert spec["nodeSelector"]["kubernetes.io/hostname"] == "node-gpu"
        assert spec["activeDeadlineSeconds"] == 8 * 3600

    run(go())


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"dynamic_node": "node-a", "dynamic_cpu": "17"}, "outside 0..16"),
        ({"dynamic_node": "node-gpu", "dynamic_cpu": "30"}, "outside 0..24"),
        ({"dynamic_node": "node-a", "dynamic_memory": "65"}, "dynamic_memory"),
        ({"dynamic_node": "node-a", "dynamic_gpu": "1"}, "more than the 0 available"),
        ({"dynamic_node": "node-gpu", "dynamic_gpu": "3"}, "more than the 2 available"),
        ({"dynamic_node": "node-zzz"}, "unknown node"),
        ({"dynamic_node": "node-a", "dynamic_image": "evil/miner:latest"}, "not an offered image"),
        ({"dynamic_node": "node-a", "dynamic_cpu": "-1"}, "dynamic_cpu"),
        ({"dynamic_node": "node-a", "session_hours": "13"}, "maximum of 12 h"),
    ],
)
def test_dynamic_form_limits_enforced(fields, message):
    async def go():
        spawner = await make_spawner(User("octo", ["labhub:gpu-team"]))
        form = {"profile": ["custom"], "dynamic_cpu": ["1"], "dynamic_memory": ["2"]}
        form.update({k: [v] for k, v in fields.items()})
        with pytest.raises(OptionsError) as err:
            await spawner.run_options_from_form(form)
        assert err.value.status_code == 400
        assert message in err.value.jupyterhub_message
        # the same values through the API (user_options) are refused as well
        spawner.user_options = P.options_from_form(form)
        with pytest.raises(OptionsError):
            await spawner.load_user_options()

    run(go())


def test_existing_volumes_are_kept_and_shm_added_once():
    async def go():
        spawner = await make_spawner(
            User("ann", ["physics"]),
            volumes=[{"name": "home", "persistentVolumeClaim": {"claimName": "claim-ann"}}],
            volume_mounts=[{"name": "home", "mountPath": "/home/jovyan"}],
        )
        spawner.user_options = {"profile": "small"}
        await spawner.load_user_options()
        spawner.labhub_apply(await spawner.labhub_check({"profile": "small"}))
        names = [v["name"] for v in spawner.volumes]
        assert names == ["home", "labhub-dshm"]

    run(go())


def test_shm_disabled_and_custom_cpu_only_env():
    spawn = labhub_config(shm={"enabled": False}, cpu_only_env={"CUDA_VISIBLE_DEVICES": "-1"})["spawn"]

    async def go():
        spawner = await make_spawner(User("ann", ["physics"]), spawn)
        spawner.user_options = {"profile": "small"}
        manifest = await pod(spawner)
        container = manifest["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["CUDA_VISIBLE_DEVICES"] == "-1" and "NVIDIA_VISIBLE_DEVICES" not in env
        assert not [v for v in manifest["spec"]["volumes"] or [] if v["name"] == "labhub-dshm"]

    run(go())


# ---------------------------------------------------------------------------
class FakeNodeLister(P.KubernetesCapacitySource):
    """FAKE of the Kubernetes API's list_node (kubernetes_asyncio V1Node models)."""

    NODES = [
        V1Node(
            metadata=V1ObjectMeta(name="gpu-1", labels={"labhub.io/gpu": "true"}),
            spec=V1NodeSpec(),
            status=V1NodeStatus(allocatable={"cpu": "15500m", "memory": "63Gi", "nvidia.com/gpu": "2"}),
        ),
        V1Node(
            metadata=V1ObjectMeta(name="cordoned", labels={}),
            spec=V1NodeSpec(unschedulable=True),
            status=V1NodeStatus(allocatable={"cpu": "64", "memory": "512Gi"}),
        ),
        V1Node(
            metadata=V1ObjectMeta(name="cpu-1", labels={}),
            spec=V1NodeSpec(),
            status=V1NodeStatus(allocatable={"cpu": "8", "memory": "32812544Ki"}),
        ),
    ]

    async def list_nodes(self):
        return self.NODES


def test_kubernetes_capacity_source_reads_allocatable_of_schedulable_nodes():
    spawn = labhub_config()["spawn"]
    nodes = run(FakeNodeLister(spawn).nodes())
    assert [n["name"] for n in nodes] == ["gpu-1", "cpu-1"]
    assert nodes[0]["cpu"] == 15.5 and nodes[0]["memory"] == 63 * 2**30 and nodes[0]["gpu"] == 2
    assert nodes[1]["gpu"] == 0 and nodes[1]["memory"] == 32812544 * 1024
    no_gpu = labhub_config(gpu={"enabled": False}, profiles=[{"slug": "small"}],
                           dynamic={"enabled": True, "capacity_source": "kubernetes"},
                           teams={})["spawn"]
    assert [n["gpu"] for n in run(FakeNodeLister(no_gpu).nodes())] == [0, 0]


def test_pluggable_capacity_source_by_import_path():
    spawn = labhub_config(
        dynamic={"enabled": True, "capacity_source": "test_profiles.FakeNodeLister", "max_gpu": 1}
    )["spawn"]

    async def go():
        spawner = await make_spawner(User("octo", ["labhub:gpu-team"]), spawn)
        assert isinstance(spawner.labhub_capacity, FakeNodeLister)
        html = await spawner.options_form(spawner)
        assert 'value="gpu-1"' in html and 'value="cordoned"' not in html
        with pytest.raises(OptionsError):
            await spawner.run_options_from_form(
                {"profile": ["custom"], "dynamic_node": ["cpu-1"], "dynamic_cpu": ["9"], "dynamic_memory": ["1"]}
            )

    run(go())


def test_kubeconfig_fixture_points_nowhere():
    # guard: these tests must never reach a real cluster
    assert "127.0.0.1:9" in KUBECONFIG.read_text()
    assert os.environ["KUBECONFIG"] == str(KUBECONFIG)


def test_configure_wins_over_z2jh_kubespawner_settings():
    """z2jh sets c.KubeSpawner.profile_list = [] (singleuser.profileList default) and
    c.KubeSpawner.extra_pod_config / environment / volumes; Labhub must still apply."""
    from traitlets.config import Config

    import labhub_hub
    from labhub_hub.spawner import LabhubKubeSpawner

    c = Config()
    c.KubeSpawner.profile_list = []
    c.KubeSpawner.extra_pod_config = {"priorityClassName": "user"}
    c.KubeSpawner.environment = {"FROM_CHART": "1"}
    c.KubeSpawner.volumes = [{"name": "home", "emptyDir": {}}]
    data = {"test_mode": True, "auth": {"modes": ["dummy"]},
            "spawn": {"default_image": "img:1", "profiles": [{"slug": "small", "mem_limit": "2Gi"}]}}
    labhub_hub.configure(c, data)

    async def go():
        spawner = LabhubKubeSpawner(_mock=True, user=User("ann"), config=c)
        assert callable(spawner.profile_list)
        spawner.user_options = {}
        manifest = await pod(spawner)
        spec = manifest["spec"]
        assert spec["priorityClassName"] == "user" and spec["activeDeadlineSeconds"] == 8 * 3600
        env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
        assert env["FROM_CHART"] == "1" and env["NVIDIA_VISIBLE_DEVICES"] == "void"
        assert [v["name"] for v in spec["volumes"]] == ["home", "labhub-dshm"]
        assert int(spec["containers"][0]["resources"]["limits"]["memory"]) == 2 * 2**30

    run(go())
