"""Profiles, team mapping, cluster capacity and the server options form.

Pure functions over the validated ``spawn`` section (labhub_hub.config), used by
:class:`labhub_hub.spawner.LabhubKubeSpawner`.
"""

import asyncio
import importlib
import os

from jinja2 import Environment, FileSystemLoader, select_autoescape
from tornado import web

from .config import ConfigError, format_memory, parse_cpu, parse_memory

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")
_ENV = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


class OptionsError(web.HTTPError):
    """A refused server option; JupyterHub shows the message above the form."""

    def __init__(self, status, message):
        super().__init__(status, "%s", message)
        self.jupyterhub_message = message


# --------------------------------------------------------------------------
# profile list
# --------------------------------------------------------------------------
def kubespawner_override(profile, spawn):
    """KubeSpawner trait overrides for one static profile."""
    override = {"image": profile["image"]}
    for name in ("cpu_guarantee", "cpu_limit", "mem_guarantee", "mem_limit"):
        if profile[name] is not None:
            override[name] = profile[name]
    if profile["node_selector"]:
        override["node_selector"] = dict(profile["node_selector"])
    if profile["tolerations"]:
        override["tolerations"] = [dict(t) for t in profile["tolerations"]]
    if profile["gpu"]:
        res = spawn["gpu"]["resource_name"]
        override["extra_resource_limits"] = {res: str(profile["gpu"])}
        override["extra_resource_guarantees"] = {res: str(profile["gpu"])}
    return override


def all_profiles(spawn):
    """Every profile (static ones, then the dynamic one) in KubeSpawner's format."""
    out = []
    for p in spawn["profiles"]:
        out.append(
            {
                "slug": p["slug"],
                "display_name": p["display_name"],
                "description": p["description"],
                "default": p["default"],
                "kubespawner_override": kubespawner_override(p, spawn),
                "labhub": {
                    "dynamic": False,
                    "gpu": p["gpu"],
                    "max_session_hours": p["max_session_hours"],
                    "shm_size": p["shm_size"],
                },
            }
        )
    dyn = spawn["dynamic"]
    if dyn["enabled"]:
        out.append(
            {
                "slug": dyn["slug"],
                "display_name": dyn["display_name"],
                "description": dyn["description"],
                "default": False,
                "kubespawner_override": {},
                "labhub": {
                    "dynamic": True,
                    "gpu": 0,
                    "max_session_hours": dyn["max_session_hours"],
                    "shm_size": None,
                },
            }
        )
    return out


def allowed_slugs(spawn, group_names, is_admin):
    """Profile slugs a user may start, from the groups (teams) they belong to."""
    every = [p["slug"] for p in all_profiles(spawn)]
    if is_admin and spawn["admin_all_profiles"]:
        return every
    allowed = set()
    matched = False
    for group in group_names:
        if group in spawn["teams"]:
            matched = True
            allowed.update(spawn["teams"][group])
    if not matched:
        allowed.update(spawn["default_profiles"])
    return [slug for slug in every if slug in allowed]


def profiles_for(spawn, group_names, is_admin):
    allowed = set(allowed_slugs(spawn, group_names, is_admin))
    profiles = [p for p in all_profiles(spawn) if p["slug"] in allowed]
    if profiles and not any(p["default"] for p in profiles):
        profiles[0] = dict(profiles[0], default=True)
    return profiles


def session_choices(spawn, max_hours):
    return [h for h in spawn["session"]["choices_hours"] if h <= max_hours] or [max_hours]


# --------------------------------------------------------------------------
# capacity
# --------------------------------------------------------------------------
class StaticCapacitySource:
    """Nodes listed in the configuration (spawn.dynamic.nodes)."""

    def __init__(self, spawn):
        self.spawn = spawn

    async def nodes(self, spawner=None):
        return [dict(n) for n in self.spawn["dynamic"]["nodes"]]


def node_capacity(node, gpu_resource):
    """A kubernetes V1Node -> {name, cpu, memory, gpu, labels} from its allocatable."""
    alloc = (node.status.allocatable if node.status else None) or {}
    name = node.metadata.name
    return {
        "name": name,
        "cpu": parse_cpu(alloc.get("cpu") or "1m", f"node {name} cpu"),
        "memory": parse_memory(alloc.get("memory") or 1, f"node {name} memory"),
        "gpu": int(alloc.get(gpu_resource, 0) or 0),
        "labels": dict(node.metadata.labels or {}),
    }


class KubernetesCapacitySource:
    """Allocatable resources of schedulable nodes, through kubespawner's API client."""

    def __init__(self, spawn):
        self.spawn = spawn

    async def list_nodes(self):
        from kubespawner.clients import shared_client

        api = shared_client("CoreV1Api")
        selector = ",".join(f"{k}={v}" for k, v in self.spawn["dynamic"]["node_label_selector"].items())
        response = await asyncio.wait_for(
            api.list_node(label_selector=selector or None),
            self.spawn["dynamic"]["capacity_timeout_seconds"],
        )
        return response.items

    async def nodes(self, spawner=None):
        gpu_resource = self.spawn["gpu"]["resource_name"]
        result = []
        for node in await self.list_nodes():
            if node.spec is not None and node.spec.unschedulable:
                continue
            cap = node_capacity(node, gpu_resource)
            if not self.spawn["gpu"]["enabled"]:
                cap["gpu"] = 0
            result.append(cap)
        return result


def capacity_source(spawn):
    name = spawn["dynamic"]["capacity_source"]
    if name == "static":
        return StaticCapacitySource(spawn)
    if name == "kubernetes":
        return KubernetesCapacitySource(spawn)
    module, _, cls = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), cls)(spawn)
    except (ImportError, AttributeError) as exc:
        raise ConfigError("spawn.dynamic.capacity_source", f"cannot import {name}: {exc}") from exc


# --------------------------------------------------------------------------
# form
# --------------------------------------------------------------------------
def render_form(spawn, profiles, nodes, error=""):
    dyn = spawn["dynamic"]
    view_nodes = []
    for n in nodes or []:
        max_cpu = min(n["cpu"], dyn["max_cpu"]) if dyn["max_cpu"] else n["cpu"]
        max_mem = min(n["memory"], dyn["max_memory"]) if dyn["max_memory"] else n["memory"]
        view_nodes.append(
            {
                "name": n["name"],
                "max_cpu": f"{max_cpu:g}",
                "max_memory_gib": f"{max_mem / 2**30:g}",
                "max_gpu": min(n["gpu"], dyn["max_gpu"]),
            }
        )
    for p in profiles:
        p["session_choices"] = session_choices(spawn, p["labhub"]["max_session_hours"])
    return _ENV.get_template("labhub-spawn-form.html").render(
        profiles=profiles,
        nodes=view_nodes,
        images=dyn["images"],
        default_hours=spawn["session"]["default_hours"],
        gpu_enabled=spawn["gpu"]["enabled"],
    )


def _first(formdata, name, default=None):
    value = formdata.get(name)
    if isinstance(value, list):
        value = value[0] if value else default
    return default if value in (None, "") else value


def options_from_form(formdata):
    """Form fields (lists of strings) -> user_options (plain JSON)."""
    options = {"profile": _first(formdata, "profile", "")}
    hours = _first(formdata, "session_hours")
    if hours is not None:
        options["session_hours"] = hours
    for name in ("image", "node", "cpu", "memory", "gpu"):
        value = _first(formdata, f"dynamic_{name}")
        if value is not None:
            options[f"dynamic_{name}"] = value
    return options


def _number(value, name):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise OptionsError(400, f"{name}: not a number: {value!r}") from None
    if number != number or number < 0:  # NaN or negative
        raise OptionsError(400, f"{name}: must be a positive number")
    return number


def check_options(spawn, user_options, profiles, username, nodes=None):
    """Validate user_options against what this user may start.

    ``profiles`` is the user's allowed list (profiles_for).  Returns a dict with
    the chosen profile, session seconds and, for the dynamic profile, the
    resources.  Raises OptionsError (403 forbidden profile, 400 bad values).
    """
    slug = user_options.get("profile") or ""
    every = {p["slug"] for p in all_profiles(spawn)}
    allowed = {p["slug"]: p for p in profiles}
    if not profiles:
        raise OptionsError(403, f"No server profile is available to user {username!r}; ask an administrator.")
    if not slug:
        slug = next(p["slug"] for p in profiles if p.get("default"))
    if slug not in allowed:
        if slug in every:
            raise OptionsError(403, f"Profile {slug!r} is not available to user {username!r} (team mapping).")
        raise OptionsError(400, f"Unknown profile {slug!r}.")
    profile = allowed[slug]
    max_hours = profile["labhub"]["max_session_hours"]
    hours = user_options.get("session_hours")
    if hours is None:
        hours = min(spawn["session"]["default_hours"], max_hours)
    hours = _number(hours, "session_hours")
    if hours <= 0:
        raise OptionsError(400, "session_hours: must be positive")
    if hours > max_hours:
        raise OptionsError(
            400, f"session_hours: {hours:g} h exceeds the maximum of {max_hours:g} h for profile {slug!r}"
        )
    result = {"profile": profile, "session_seconds": int(hours * 3600), "dynamic": None}
    if not profile["labhub"]["dynamic"]:
        return result
    dyn = spawn["dynamic"]
    image = user_options.get("dynamic_image") or dyn["images"][0]
    if image not in dyn["images"]:
        raise OptionsError(400, f"dynamic_image: {image!r} is not an offered image")
    node_name = user_options.get("dynamic_node")
    by_name = {n["name"]: n for n in nodes or []}
    if not node_name or node_name not in by_name:
        raise OptionsError(400, f"dynamic_node: unknown node {node_name!r}")
    node = by_name[node_name]
    cpu = _number(user_options.get("dynamic_cpu", 1), "dynamic_cpu")
    mem_raw = user_options.get("dynamic_memory", 1)
    try:
        memory = int(_number(mem_raw, "dynamic_memory") * 2**30)  # GiB from the form
    except OptionsError:
        try:
            memory = parse_memory(mem_raw, "dynamic_memory")
        except ConfigError as exc:
            raise OptionsError(400, str(exc)) from None
    gpu = _number(user_options.get("dynamic_gpu", 0), "dynamic_gpu")
    if gpu != int(gpu):
        raise OptionsError(400, "dynamic_gpu: must be a whole number")
    gpu = int(gpu)
    max_cpu = min(node["cpu"], dyn["max_cpu"]) if dyn["max_cpu"] else node["cpu"]
    max_mem = min(node["memory"], dyn["max_memory"]) if dyn["max_memory"] else node["memory"]
    max_gpu = min(node["gpu"], dyn["max_gpu"]) if spawn["gpu"]["enabled"] else 0
    if cpu <= 0 or cpu > max_cpu + 1e-9:
        raise OptionsError(400, f"dynamic_cpu: {cpu:g} CPUs is outside 0..{max_cpu:g} on node {node_name!r}")
    if memory <= 0 or memory > max_mem:
        raise OptionsError(
            400, f"dynamic_memory: {format_memory(memory)} is outside 0..{format_memory(max_mem)} on node {node_name!r}"
        )
    if gpu > max_gpu:
        raise OptionsError(400, f"dynamic_gpu: {gpu} GPUs is more than the {max_gpu} available on node {node_name!r}")
    result["dynamic"] = {"image": image, "node": node_name, "cpu": cpu, "memory": memory, "gpu": gpu}
    return result
