"""KubeSpawner with Labhub's profiles, team mapping, time limits and GPU/CPU environment."""

import time

from kubespawner import KubeSpawner
from traitlets import Any, Dict, default

from . import profiles as P

SHM_VOLUME = "labhub-dshm"


class LabhubKubeSpawner(KubeSpawner):
    """Everything Labhub decides per server, enforced on the hub (server side).

    * ``profile_list`` is a callable: a user only sees the profiles their groups
      (GitHub teams, OIDC groups, local groups, CSV groups) map to.
    * ``options_from_form`` and ``load_user_options`` both check the choice, so a
      forged form post or an API call naming a forbidden profile is refused (403),
      as is a session length above the profile's maximum or dynamic resources
      beyond the chosen node's capacity (400).
    * The chosen session length becomes the pod's ``activeDeadlineSeconds``:
      the kubelet stops the pod then, and the hub sees the server stopped.
    * CPU-only servers get ``cpu_only_env`` (NVIDIA_VISIBLE_DEVICES=void,
      CUDA_VISIBLE_DEVICES=''); every server gets a memory-backed /dev/shm.
    """

    labhub_spawn = Dict(config=True, help="validated `spawn` section (labhub_hub.config)")
    labhub_capacity = Any(help="capacity source object; built from spawn.dynamic.capacity_source")

    @default("labhub_capacity")
    def _default_capacity(self):
        return P.capacity_source(self.labhub_spawn)

    # --- who may start what ----------------------------------------------
    def labhub_groups(self):
        groups = getattr(self.user, "groups", None) or []
        return sorted({getattr(g, "name", g) for g in groups})

    def labhub_profiles(self):
        return P.profiles_for(self.labhub_spawn, self.labhub_groups(), bool(getattr(self.user, "admin", False)))

    @default("profile_list")
    def _default_profile_list(self):
        return labhub_profile_list

    async def labhub_nodes(self, profiles):
        if not any(p["labhub"]["dynamic"] for p in profiles):
            return None
        return await self.labhub_capacity.nodes(self)

    # --- the form ------------------------------------------------------------
    @default("options_form")
    def _default_options_form(self):
        return labhub_options_form

    @default("options_from_form")
    def _default_options_from_form(self):
        return labhub_options_from_form

    async def labhub_check(self, options):
        profiles = self.labhub_profiles()
        nodes = await self.labhub_nodes(profiles)
        return P.check_options(self.labhub_spawn, options, profiles, self.user.name, nodes)

    # --- applying the choice ---------------------------------------------------
    async def load_user_options(self):
        decision = await self.labhub_check(self.user_options or {})
        # name the profile explicitly so kubespawner applies the same one
        self.user_options = dict(self.user_options or {}, profile=decision["profile"]["slug"])
        await super().load_user_options()
        self.labhub_apply(decision)

    def labhub_apply(self, decision):
        spawn = self.labhub_spawn
        dyn = decision["dynamic"]
        gpu_res = spawn["gpu"]["resource_name"]
        if dyn is not None:
            self.image = dyn["image"]
            self.cpu_limit = self.cpu_guarantee = dyn["cpu"]
            self.mem_limit = self.mem_guarantee = dyn["memory"]
            self.node_selector = dict(self.node_selector, **{"kubernetes.io/hostname": dyn["node"]})
            limits = {k: v for k, v in self.extra_resource_limits.items() if k != gpu_res}
            guarantees = {k: v for k, v in self.extra_resource_guarantees.items() if k != gpu_res}
            if dyn["gpu"]:
                limits[gpu_res] = guarantees[gpu_res] = str(dyn["gpu"])
            self.extra_resource_limits, self.extra_resource_guarantees = limits, guarantees

        # session time limit
        seconds = decision["session_seconds"]
        self.extra_pod_config = dict(self.extra_pod_config, activeDeadlineSeconds=seconds)
        env = dict(self.environment)
        env["LABHUB_SESSION_SECONDS"] = str(seconds)
        env["LABHUB_SESSION_DEADLINE"] = str(int(time.time()) + seconds)
        env["LABHUB_PROFILE"] = decision["profile"]["slug"]

        # GPU / CPU-only environment
        gpus = int(self.extra_resource_limits.get(gpu_res, 0) or 0)
        if gpus == 0:
            env.update(spawn["cpu_only_env"])
        else:
            for key in spawn["cpu_only_env"]:
                env.pop(key, None)
        self.environment = env

        # /dev/shm for PyTorch data loaders
        if spawn["shm"]["enabled"]:
            size = decision["profile"]["labhub"]["shm_size"]
            if size is None and self.mem_limit:
                size = int(self.mem_limit * spawn["shm"]["fraction_of_memory_limit"])
            if size is None:
                size = spawn["shm"]["size_limit"]
            volume = {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": P.format_memory(size)}}
            mount = {"name": SHM_VOLUME, "mountPath": "/dev/shm"}
            self.volumes = _with_item(self.volumes, volume)
            self.volume_mounts = _with_item(self.volume_mounts, mount)


# Module-level so configure() can also set them explicitly on
# c.LabhubKubeSpawner: z2jh sets c.KubeSpawner.profile_list from
# singleuser.profileList (default []), which would otherwise shadow the defaults.
def labhub_profile_list(spawner):
    """Only the user's allowed profiles, so kubespawner's own validation sees those alone."""
    return [{k: v for k, v in p.items() if k != "labhub"} for p in spawner.labhub_profiles()]


async def labhub_options_form(spawner):
    profiles = spawner.labhub_profiles()
    nodes = await spawner.labhub_nodes(profiles)
    return P.render_form(spawner.labhub_spawn, profiles, nodes)


async def labhub_options_from_form(formdata, spawner):
    options = P.options_from_form(formdata)
    await spawner.labhub_check(options)
    return options


def _with_item(collection, item):
    """Add or replace an item named item['name'] in a kubespawner list-or-dict trait."""
    if isinstance(collection, dict):
        out = dict(collection)
        out[item["name"]] = item
        return out
    out = [v for v in (collection or []) if not (isinstance(v, dict) and v.get("name") == item["name"])]
    out.append(item)
    return out
