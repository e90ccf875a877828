# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""The MicroK8s and snap command lines, driven through _cmd_runner.

Parsers follow the output formats of MicroK8s' scripts/wrappers/status.py (``--format yaml``),
add_token.py (``add-node --format json``) and snapd's ``snap list``.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re

from ansible_collections.labhub.platform.plugins.module_utils._cmd_runner import CmdRunner, fmt

SNAP_DATA = "/var/snap/microk8s/current"
WORKER_LOCK = SNAP_DATA + "/var/lock/clustered.lock"
WORKER_MESSAGE = "acting as a node in a cluster"

MICROK8S_COMMON_ARGS = dict(
    microk8s_path=dict(type="path", default="microk8s"),
)


class Microk8sError(Exception):
    pass


def _scalar(value):
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    if value.lower() == "true":
        return True
    if value.lower() == "false":
        return False
    return value


def _load_status_yaml(text):
    """Load the YAML subset status.py prints: top-level keys holding scalars, maps of scalars, or
    lists of flat maps (directly or one map level down).

    Nodes do not always have PyYAML, so this reads that fixed layout and rejects anything else.
    """
    data = {}
    top = sub = item = None
    item_indent = None
    for raw in text.splitlines():
        if not raw.strip():
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        line = raw.strip()
        is_item = line.startswith("- ")
        if is_item:
            line = line[2:]
        key, sep, value = line.partition(":")
        if not sep or (indent > 0 and top is None):
            raise Microk8sError("cannot parse 'microk8s status --format yaml' line: %r" % raw)
        key, value = key.strip(), value.strip()
        if indent == 0:
            top, sub, item, item_indent = key, None, None, None
            data[top] = _scalar(value) if value else None
        elif is_item:
            parent = data if sub is None else data[top]
            name = top if sub is None else sub
            if not isinstance(parent.get(name), list):
                parent[name] = []
            item = {key: _scalar(value)}
            item_indent = indent + 2
            parent[name].append(item)
        elif item is not None and indent >= item_indent:
            item[key] = _scalar(value)
        else:
            if not isinstance(data.get(top), dict):
                data[top] = {}
            sub, item, item_indent = key, None, None
            data[top][sub] = _scalar(value) if value else None
    return data


def parse_status_yaml(text):
    """Parse ``microk8s status --format yaml``.

    Returns ``{running, message, ha_enabled, ha_nodes: [{address, role}], addons: {name: {status,
    version, repository, description}}}``. ``running`` is a real bool (status.py prints ``True``).
    """
    data = _load_status_yaml(text)
    if "microk8s" not in data:
        raise Microk8sError("unexpected 'microk8s status --format yaml' output: %s" % text.strip()[:200])
    mk = data.get("microk8s") or {}
    running = mk.get("running")
    if isinstance(running, str):
        running = running.strip().lower() == "true"
    ha = data.get("high-availability") or {}
    ha_enabled = ha.get("enabled")
    if isinstance(ha_enabled, str):
        ha_enabled = ha_enabled.strip().lower() == "true"
    nodes = []
    for node in ha.get("nodes") or []:
        nodes.append({"address": str(node.get("address")), "role": str(node.get("role"))})
    addons = {}
    for addon in data.get("addons") or []:
        addons[str(addon.get("name"))] = {
            "status": str(addon.get("status")),
            "version": str(addon.get("version")) if addon.get("version") is not None else None,
            "repository": addon.get("repository"),
            "description": addon.get("description"),
        }
    return {
        "running": bool(running),
        # status.py prints the message after the high-availability block, so YAML files it there.
        "message": mk.get("message") or ha.get("message"),
        "ha_enabled": bool(ha_enabled),
        "ha_nodes": nodes,
        "voters": [n["address"] for n in nodes if n["role"] == "voter"],
        "addons": addons,
    }


def parse_snap_list(text):
    """Parse ``snap list`` (table) into ``{name: {version, revision, tracking, publisher, notes: []}}``."""
    result = {}
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("Name"):
        return result
    for line in lines[1:]:
        cols = line.split()
        if len(cols) < 5:
            continue
        notes = cols[5].split(",") if len(cols) > 5 and cols[5] != "-" else []
        result[cols[0]] = {"version": cols[1], "revision": cols[2], "tracking": cols[3],
                           "publisher": cols[4], "notes": notes, "held": "held" in notes}
    return result


def parse_nodes_json(text):
    """``kubectl get nodes -o json`` -> ``[{name, ready, control_plane, labels, address, unschedulable}]``."""
    data = json.loads(text)
    items = data.get("items", [data] if data.get("kind") == "Node" else [])
    nodes = []
    for item in items:
        meta = item.get("metadata", {})
        labels = meta.get("labels", {}) or {}
        ready = False
        for cond in item.get("status", {}).get("conditions", []) or []:
            if cond.get("type") == "Ready":
                ready = cond.get("status") == "True"
        address = None
        for addr in item.get("status", {}).get("addresses", []) or []:
            if addr.get("type") == "InternalIP":
                address = addr.get("address")
        nodes.append({
            "name": meta.get("name"),
            "ready": ready,
            "control_plane": "node.kubernetes.io/microk8s-controlplane" in labels,
            "labels": labels,
            "address": address,
            "unschedulable": bool(item.get("spec", {}).get("unschedulable", False)),
            "taints": item.get("spec", {}).get("taints", []) or [],
        })
    return nodes


def parse_join_url(url):
    """``<host>:<port>/<token>[/<hash>]`` -> dict; raises Microk8sError when malformed."""
    match = re.match(r"^(?P<host>[^/\s]+):(?P<port>\d+)/(?P<token>[^/\s]+)(?:/(?P<check>[^/\s]+))?$", url or "")
    if not match:
        raise Microk8sError("the join URL must look like <address>:<port>/<token>/<hash>")
    return match.groupdict()


class Microk8s:
    """The ``microk8s`` CLI."""

    def __init__(self, module, path="microk8s"):
        self.module = module
        binary = path
        if os.path.sep not in path:
            binary = module.get_bin_path(path, opt_dirs=["/snap/bin"]) or path
        self.binary = binary
        self.formats = {
            "format": fmt.as_opt_val("--format"),
            "wait_ready": fmt.as_bool("--wait-ready"),
            "timeout": fmt.as_opt_val("--timeout"),
            "token": fmt.as_opt_val("--token"),
            "token_ttl": fmt.as_opt_val("--token-ttl"),
            "worker": fmt.as_bool("--worker"),
            "force": fmt.as_bool("--force"),
        }

    def runner(self, *sub):
        """A CmdRunner for ``microk8s <sub...>``: options follow the subcommand."""
        return CmdRunner(self.module, [self.binary] + list(sub), self.formats)

    def status(self, wait_ready=False, timeout=None):
        result = self.runner("status").run(
            check=False, format="yaml", wait_ready=wait_ready or None, timeout=timeout if wait_ready else None)
        if result.rc != 0:
            if WORKER_MESSAGE in (result.stdout + result.stderr):
                return {"running": None, "worker": True, "ha_enabled": False, "ha_nodes": [], "voters": [],
                        "addons": {}, "message": result.stdout.strip()}
            detail = (result.stderr or result.stdout).strip()
            raise Microk8sError("'%s' exited %s: %s" % (" ".join(result.argv), result.rc, detail))
        status = parse_status_yaml(result.stdout)
        status["worker"] = False
        return status

    def enable(self, name, args=None, flags=None):
        spec = name + (":" + ",".join(args) if args else "")
        return self.runner("enable").run([spec] + list(flags or []))

    def disable(self, name):
        return self.runner("disable").run([name])

    def add_node(self, token, ttl):
        result = self.runner("add-node").run(token=token, token_ttl=ttl, format="json")
        try:
            return json.loads(result.stdout)
        except ValueError:
            raise Microk8sError("cannot parse 'microk8s add-node --format json' output: %s" % result.stdout[:200])

    def join(self, url, worker):
        return self.runner("join").run([url], check=False, worker=worker)

    def leave(self):
        return self.runner("leave").run(check=False)

    def remove_node(self, name, force):
        return self.runner("remove-node").run([name], check=False, force=force)

    def nodes(self):
        result = self.runner("kubectl", "get", "nodes").run(["-o", "json"])
        return parse_nodes_json(result.stdout)


class Snap:
    """The ``snap`` CLI (the subset an offline install needs)."""

    def __init__(self, module, path="snap"):
        self.module = module
        self.binary = module.get_bin_path(path, required=True) if os.path.sep not in path else path

    def runner(self, sub):
        return CmdRunner(self.module, [self.binary, sub], {"classic": fmt.as_bool("--classic")})

    def list(self, name):
        result = self.runner("list").run([name], check=False)
        if result.rc != 0:
            return None
        return parse_snap_list(result.stdout).get(name)

    def ack(self, path):
        return self.runner("ack").run([path])

    def install(self, path, classic):
        return self.runner("install").run([path], classic=classic)

    def hold(self, name):
        return self.runner("refresh").run(["--hold", name])

    def unhold(self, name):
        return self.runner("refresh").run(["--unhold", name])
