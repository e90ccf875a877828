"""SIMULATOR - a simulated Kubernetes cluster for the demo and the UI tests.

Nothing in this module talks to Kubernetes. ``SimulatedCluster`` implements the
``labhub_portal.cluster.ClusterClient`` protocol and answers with Pod JSON that
is built from the Kubernetes client's own models (``kubernetes_asyncio.client``)
and serialised the way the API server returns it (camelCase keys, RFC 3339
timestamps), so the recorder parses exactly what it parses in production.

Simulated users across several departments start and stop CPU and GPU servers
over time: every ``tick_seconds`` of wall-clock time, idle users may start a
server (new pods are ``Pending`` for one tick, then ``Running``) and running
users may stop theirs. ``delete_pod`` removes the pod like the API server would
after termination, and every deletion is recorded in ``deleted_pods`` so tests
can assert what the portal asked for.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from kubernetes_asyncio.client import (
    V1Container,
    V1ContainerState,
    V1ContainerStateRunning,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodCondition,
    V1PodSpec,
    V1PodStatus,
    V1ResourceRequirements,
)

from labhub_portal.cluster import GPU_PRODUCT_LABEL, PodNotFound

SIMULATOR_LABEL = "SIMULATOR"


class SimulatedPodNotFound(PodNotFound):
    """The simulated API server has no pod with that name (HTTP 404 in a real cluster)."""


@dataclass(frozen=True)
class DemoDepartment:
    name: str
    cpu_core_hour: float
    gpu_hour: float
    memory_gib_hour: float


@dataclass(frozen=True)
class DemoUser:
    username: str
    display_name: str
    department: str


@dataclass(frozen=True)
class Profile:
    """A kubespawner profile as the hub would render it into the pod."""

    slug: str
    image: str
    cpu_request: float
    cpu_limit: float
    mem_request_gib: int
    mem_limit_gib: int
    gpus: int = 0
    gpu_product: str | None = None


@dataclass(frozen=True)
class SimNode:
    name: str
    cpu: int
    memory_gib: int
    gpus: int = 0
    gpu_product: str | None = None

    def labels(self) -> dict[str, str]:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "node.kubernetes.io/instance-type": "gpu" if self.gpus else "cpu",
        }
        if self.gpu_product:
            labels[GPU_PRODUCT_LABEL] = self.gpu_product
            labels["nvidia.com/gpu.count"] = str(self.gpus)
        return labels


# Hourly rates in the portal's currency (TWD by default).
DEPARTMENTS: tuple[DemoDepartment, ...] = (
    DemoDepartment("Physics", 1.0, 30.0, 0.20),
    DemoDepartment("Bioinformatics", 0.8, 28.0, 0.15),
    DemoDepartment("Computer Science", 0.6, 24.0, 0.10),
    DemoDepartment("Economics", 1.2, 36.0, 0.25),
    DemoDepartment("Chemistry", 1.0, 32.0, 0.20),
)

USERS: tuple[DemoUser, ...] = (
    DemoUser("alice", "Alice Chen", "Physics"),
    DemoUser("bob", "Bob Lin", "Physics"),
    DemoUser("chiara", "Chiara Rossi", "Physics"),
    DemoUser("dmitri", "Dmitri Volkov", "Bioinformatics"),
    DemoUser("emma", "Emma Wang", "Bioinformatics"),
    DemoUser("farid", "Farid Haddad", "Computer Science"),
    DemoUser("grace", "Grace Huang", "Computer Science"),
    DemoUser("hiro", "Hiro Tanaka", "Computer Science"),
    DemoUser("ines", "Ines Silva", "Economics"),
    DemoUser("jun", "Jun Park", "Economics"),
    DemoUser("kavya", "Kavya Iyer", "Chemistry"),
    DemoUser("liam", "Liam Murphy", "Chemistry"),
)

PROFILES: tuple[Profile, ...] = (
    Profile("cpu-small", "quay.io/jupyter/scipy-notebook:2024-05-27", 1, 2, 4, 8),
    Profile("cpu-large", "quay.io/jupyter/datascience-notebook:2024-05-27", 4, 8, 16, 32),
    Profile("gpu-a100", "quay.io/jupyter/pytorch-notebook:cuda12-2024-05-27", 8, 16, 64, 96, 1,
            "NVIDIA-A100-SXM4-80GB"),
    Profile("gpu-a100x2", "quay.io/jupyter/pytorch-notebook:cuda12-2024-05-27", 16, 32, 128, 192, 2,
            "NVIDIA-A100-SXM4-80GB"),
    Profile("gpu-l40s", "quay.io/jupyter/tensorflow-notebook:cuda-2024-05-27", 8, 16, 48, 64, 1,
            "NVIDIA-L40S"),
)

NODES: tuple[SimNode, ...] = (
    SimNode("cpu-node-1", 64, 256),
    SimNode("cpu-node-2", 64, 256),
    SimNode("gpu-node-a100-1", 128, 1024, 4, "NVIDIA-A100-SXM4-80GB"),
    SimNode("gpu-node-a100-2", 128, 1024, 4, "NVIDIA-A100-SXM4-80GB"),
    SimNode("gpu-node-l40s-1", 96, 512, 4, "NVIDIA-L40S"),
)


def pod_name_for(username: str, servername: str = "") -> str:
    """z2jh's default pod name template ``jupyter-{username}--{servername}``."""
    return f"jupyter-{username}--{servername}" if servername else f"jupyter-{username}"


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_api_json(obj):
    """Serialise a Kubernetes client model the way the API server sends it.

    Same walk as ``ApiClient.sanitize_for_serialization`` (attribute_map gives
    the camelCase JSON keys), without building an HTTP client, and with
    timestamps in the API server's ``...Z`` form.
    """
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [to_api_json(item) for item in obj]
    if isinstance(obj, dt.datetime):
        return _rfc3339(obj)
    if isinstance(obj, dict):
        return {key: to_api_json(val) for key, val in obj.items()}
    return {
        obj.attribute_map[attr]: to_api_json(getattr(obj, attr))
        for attr in obj.openapi_types
        if getattr(obj, attr) is not None
    }


def _quantity_cpu(cores: float) -> str:
    return str(int(cores)) if float(cores).is_integer() else f"{int(cores * 1000)}m"


def build_pod(
    *,
    user: DemoUser,
    profile: Profile,
    node: SimNode,
    namespace: str,
    started_at: dt.datetime,
    phase: str = "Running",
    servername: str = "",
    uid: str | None = None,
) -> dict:
    """Pod JSON of a kubespawner single-user server, built from client models."""
    name = pod_name_for(user.username, servername)
    uid = uid or str(uuid.uuid4())
    requests = {"cpu": _quantity_cpu(profile.cpu_request), "memory": f"{profile.mem_request_gib}Gi"}
    limits = {"cpu": _quantity_cpu(profile.cpu_limit), "memory": f"{profile.mem_limit_gib}Gi"}
    if profile.gpus:
        requests["nvidia.com/gpu"] = str(profile.gpus)
        limits["nvidia.com/gpu"] = str(profile.gpus)
    running = phase == "Running"
    container_state = (
        V1ContainerState(running=V1ContainerStateRunning(started_at=started_at))
        if running
        else V1ContainerState(waiting=V1ContainerStateWaiting(reason="ContainerCreating"))
    )
    pod = V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=V1ObjectMeta(
            name=name,
            namespace=namespace,
            uid=uid,
            creation_timestamp=started_at,
            resource_version=str(100000 + uuid.UUID(uid).int % 900000) if uid else "1",
            labels={
                "app": "jupyterhub",
                "chart": "jupyterhub-4.4.0",
                "component": "singleuser-server",
                "heritage": "jupyterhub",
                "release": "jhub",
                "hub.jupyter.org/network-access-hub": "true",
                "hub.jupyter.org/servername": servername,
                "hub.jupyter.org/username": user.username,
                "labhub.io/simulated": "true",
            },
            annotations={
                "hub.jupyter.org/username": user.username,
                "hub.jupyter.org/servername": servername,
                "labhub.io/profile": profile.slug,
                "labhub.io/simulator": "labhub_portal.demo.simulator",
            },
        ),
        spec=V1PodSpec(
            node_name=node.name,
            restart_policy="OnFailure",
            service_account_name="default",
            node_selector={GPU_PRODUCT_LABEL: profile.gpu_product} if profile.gpu_product else None,
            containers=[
                V1Container(
                    name="notebook",
                    image=profile.image,
                    args=["jupyterhub-singleuser"],
                    resources=V1ResourceRequirements(requests=requests, limits=limits),
                )
            ],
        ),
        status=V1PodStatus(
            phase=phase,
            host_ip="10.0.0.1",
            pod_ip=None,
            start_time=started_at,
            conditions=[
                V1PodCondition(type="PodScheduled", status="True", last_transition_time=started_at),
                V1PodCondition(type="Initialized", status="True", last_transition_time=started_at),
                V1PodCondition(type="ContainersReady", status=str(running), last_transition_time=started_at),
                V1PodCondition(type="Ready", status=str(running), last_transition_time=started_at),
            ],
            container_statuses=[
                V1ContainerStatus(
                    name="notebook",
                    image=profile.image,
                    image_id="",
                    ready=running,
                    restart_count=0,
                    started=running,
                    state=container_state,
                )
            ],
        ),
    )
    return to_api_json(pod)


@dataclass
class _Server:
    user: DemoUser
    profile: Profile
    node: SimNode
    started_at: dt.datetime
    uid: str
    phase: str
    servername: str = ""

    @property
    def name(self) -> str:
        return pod_name_for(self.user.username, self.servername)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class SimulatedCluster:
    """SIMULATOR implementing ``labhub_portal.cluster.ClusterClient`` (no Kubernetes involved).

    ``churn=False`` freezes the population (only ``start_server``/``delete_pod``
    change it), which the UI tests use to get a stable set of pods.
    """

    namespace: str = "jhub"
    users: tuple[DemoUser, ...] = USERS
    profiles: tuple[Profile, ...] = PROFILES
    nodes: tuple[SimNode, ...] = NODES
    seed: int = 7
    churn: bool = True
    tick_seconds: float = 5.0
    # per tick and user / server, scaled by the time of day (see activity()); the defaults suit the
    # live demo's 5 s ticks: servers come and go within minutes
    start_probability: float = 0.02
    stop_probability: float = 0.015
    min_running: int = 0
    clock: Callable[[], dt.datetime] = _utcnow
    zone: dt.tzinfo = dt.timezone.utc
    deleted_pods: list[str] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._servers: dict[str, _Server] = {}
        self._last_tick = self.clock()
        # No lock: every method runs without awaiting, so each call is atomic on the event loop.

    # ---- the ClusterClient protocol -------------------------------------------------------

    async def list_singleuser_pods(self) -> list[dict]:
        self._count("list_singleuser_pods")
        self._advance()
        return [
            build_pod(
                user=s.user, profile=s.profile, node=s.node, namespace=self.namespace,
                started_at=s.started_at, phase=s.phase, servername=s.servername, uid=s.uid,
            )
            for s in sorted(self._servers.values(), key=lambda s: s.started_at)
        ]

    async def node_labels(self) -> dict[str, dict[str, str]]:
        self._count("node_labels")
        return {node.name: node.labels() for node in self.nodes}

    async def delete_pod(self, name: str) -> None:
        self._count("delete_pod")
        if name not in self._servers:
            raise SimulatedPodNotFound(f"pods {name!r} not found in namespace {self.namespace!r}")
        del self._servers[name]
        self.deleted_pods.append(name)

    async def pod_usage(self) -> dict[str, dict[str, Decimal]]:
        """What metrics-server would report for the running servers (metrics.k8s.io): SIMULATED,
        each server between 5 % and 95 % of its limits, drifting slowly (a sine of about
        20 minutes with a phase from the pod's uid)."""
        self._count("pod_usage")
        minutes = self.clock().timestamp() / 60
        out: dict[str, dict[str, Decimal]] = {}
        for s in self._servers.values():
            if s.phase != "Running":
                continue
            phase = int(s.uid.replace("-", "")[:8], 16) / 0xFFFFFFFF * 2 * math.pi
            share = 0.5 + 0.45 * math.sin(minutes / 20 * 2 * math.pi + phase)
            out[s.name] = {"cpu": Decimal(str(round(s.profile.cpu_limit * share, 3))),
                           "memory": Decimal(int(s.profile.mem_limit_gib * 2**30 * (0.3 + 0.6 * share))),
                           "window": Decimal(15)}
        return out

    async def ping(self) -> None:
        self._count("ping")

    async def close(self) -> None:
        """Nothing to release; present so the app can treat every client alike."""

    # ---- helpers used by the demo and the tests -------------------------------------------

    def start_server(
        self,
        username: str,
        profile_slug: str,
        *,
        started_at: dt.datetime | None = None,
        phase: str = "Running",
        servername: str = "",
    ) -> str:
        """Start a server for a known user; returns the pod name."""
        user = self._user(username)
        profile = next((p for p in self.profiles if p.slug == profile_slug), None)
        if profile is None:
            raise ValueError(f"unknown profile {profile_slug!r}")
        name = pod_name_for(user.username, servername)
        if name in self._servers:
            raise ValueError(f"{name} is already running")
        node = self._place(profile)
        if node is None:
            raise ValueError(f"no node has room for profile {profile_slug!r}")
        self._servers[name] = _Server(
            user=user, profile=profile, node=node, started_at=started_at or self.clock(),
            uid=str(uuid.UUID(int=self._rng.getrandbits(128), version=4)), phase=phase,
            servername=servername,
        )
        return name

    def running_pod_names(self) -> list[str]:
        return sorted(self._servers)

    def populate(self, fraction: float = 0.6, max_age_hours: float = 9.0) -> list[str]:
        """Start servers for about ``fraction`` of the users, started up to ``max_age_hours`` ago."""
        now = self.clock()
        started = []
        for user in self.users:
            if self._rng.random() < fraction:
                age = dt.timedelta(minutes=self._rng.uniform(5, max_age_hours * 60))
                profile = self._pick_profile()
                if self._place(profile) is None:
                    continue
                started.append(self.start_server(user.username, profile.slug, started_at=now - age))
        return started

    # ---- simulation -----------------------------------------------------------------------

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def _user(self, username: str) -> DemoUser:
        for user in self.users:
            if user.username == username:
                return user
        raise ValueError(f"unknown user {username!r}")

    def _pick_profile(self) -> Profile:
        # CPU servers are more common than GPU servers, big GPU servers are rare.
        weights = [5, 3, 2, 1, 2][: len(self.profiles)]
        return self._rng.choices(self.profiles, weights=weights + [1] * (len(self.profiles) - len(weights)))[0]

    def _place(self, profile: Profile) -> SimNode | None:
        for node in self._candidates(profile):
            on_node = [s for s in self._servers.values() if s.node.name == node.name]
            cpu = sum(s.profile.cpu_request for s in on_node) + profile.cpu_request
            mem = sum(s.profile.mem_request_gib for s in on_node) + profile.mem_request_gib
            gpus = sum(s.profile.gpus for s in on_node) + profile.gpus
            if cpu <= node.cpu and mem <= node.memory_gib and gpus <= node.gpus:
                return node
        return None

    def _candidates(self, profile: Profile) -> Iterable[SimNode]:
        if profile.gpus:
            return [n for n in self.nodes if n.gpu_product == profile.gpu_product]
        return [n for n in self.nodes if not n.gpus] or list(self.nodes)

    def _advance(self) -> None:
        """Play the ticks that elapsed since the last call."""
        now = self.clock()
        ticks = int((now - self._last_tick).total_seconds() // self.tick_seconds)
        if ticks <= 0:
            return
        self._last_tick += dt.timedelta(seconds=ticks * self.tick_seconds)
        for _ in range(min(ticks, 20)):
            self._tick(now)

    def activity(self, moment: dt.datetime) -> float:
        """How busy the cluster is at a local time: office hours on weekdays, quiet nights and weekends."""
        local = moment.astimezone(self.zone)
        hour = local.hour
        level = 1.0 if 9 <= hour < 19 else 0.4 if 19 <= hour < 24 or 7 <= hour < 9 else 0.08
        return level * (0.35 if local.weekday() >= 5 else 1.0)

    def _tick(self, now: dt.datetime) -> None:
        for server in self._servers.values():
            if server.phase == "Pending":
                server.phase = "Running"
        if not self.churn:
            return
        activity = self.activity(now)
        for name in list(self._servers):
            stop = self.stop_probability * (1.6 - activity)
            if self._servers[name].phase == "Running" and self._rng.random() < stop:
                del self._servers[name]
        running_users = {s.user.username for s in self._servers.values()}
        for user in self._rng.sample(list(self.users), len(self.users)):
            wanted = len(self._servers) < self.min_running or self._rng.random() < self.start_probability * activity
            if user.username in running_users or not wanted:
                continue
            profile = self._pick_profile()
            if self._place(profile) is not None:
                started = now - dt.timedelta(seconds=self._rng.uniform(0, min(self.tick_seconds, 600)))
                self.start_server(user.username, profile.slug, started_at=started, phase="Pending")
