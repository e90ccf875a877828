# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""The MicroK8s and snap command lines, driven through _cmd_runner.

Parsers follow the output formats of MicroK8s' scripts/wrappers/status.py (``--format yaml``
and its exit codes), add_token.py (``add-node --format short``) and snapd's ``snap list``.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json
import os
import re
import time

from ansible_collections.labhub.platform.plugins.module_utils._cmd_runner import CmdError, CmdRunner, fmt

SNAP_DATA = "/var/snap/microk8s/current"
WORKER_LOCK = SNAP_DATA + "/var/lock/clustered.lock"
WORKER_MESSAGE = "acting as a node in a cluster"
# common/utils.py exit_if_stopped: what `microk8s status` prints (exit 0) after `microk8s stop`.
STOPPED_MESSAGE = "microk8s is not running, try microk8s start"

MICROK8S_COMMON_ARGS = dict(
    microk8s_path=dict(type="path", default="microk8s"),
)


#: kubectl's messages for a connection to the API server that failed before any answer
#: (k8s.io/client-go and net/http): a restarting or overloaded kubelite, not a wrong request.
TRANSIENT_API_ERRORS = ("Unable to connect to the server", "TLS handshake timeout", "connection refused", "was refused",
                        "connection reset by peer", "i/o timeout", "unexpected EOF",
                        "the server is currently unable to handle the request")
NODES_ATTEMPTS = 5
NODES_RETRY_DELAY = 3.0


def is_transient_api_error(text):
    """True when kubectl's error output says the API server could not be reached (retry)."""
    return any(marker in (text or "") for marker in TRANSIENT_API_ERRORS)


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


def norm_san(kind, value):
    if kind == "IP":
        try:
            return ipaddress.ip_address(value.strip()).compressed
        except ValueError:
            return value.strip()
    return value.strip().lower().rstrip(".")


def san_kind(name):
    """IP for an IP address, DNS for anything else (a host name)."""
    try:
        ipaddress.ip_address(str(name).strip())
        return "IP"
    except ValueError:
        return "DNS"


def csr_alt_names(text):
    """[(kind, index, value)] of the ``[ alt_names ]`` section of MicroK8s' certs/csr.conf(.template)."""
    section, found = None, []
    for line in (text or "").splitlines():
        stripped = line.strip()
        header = re.match(r"^\[\s*([^\]]+?)\s*\]$", stripped)
        if header:
            section = header.group(1)
            continue
        entry = re.match(r"^(DNS|IP)\.(\d+)\s*=\s*(\S+)", stripped)
        if section == "alt_names" and entry:
            found.append((entry.group(1), int(entry.group(2)), entry.group(3)))
    return found


def add_csr_alt_names(text, names):
    """``(text, added lines)``: the template with a ``DNS.<n> = name`` / ``IP.<n> = address`` line for
    each name it lacks, numbered after its own entries and placed before ``#MOREIPS`` (where
    render_csr_conf puts the node's addresses, numbering them after every IP.<n> of the template)."""
    existing = csr_alt_names(text)
    have = set((kind, norm_san(kind, value)) for kind, _i, value in existing)
    nxt = {}
    for kind in ("DNS", "IP"):
        nxt[kind] = max([i for k, i, _v in existing if k == kind] + [0]) + 1
    lines = []
    for name in names:
        kind = san_kind(name)
        key = (kind, norm_san(kind, name))
        if key in have:
            continue
        have.add(key)
        lines.append("%s.%d = %s" % (kind, nxt[kind], str(name).strip()))
        nxt[kind] += 1
    if not lines:
        return text, []
    block = "\n".join(lines)
    if re.search(r"(?m)^#MOREIPS", text):
        return re.sub(r"(?m)^#MOREIPS", lambda m: block + "\n#MOREIPS", text, count=1), lines
    out, done = [], False
    rows = text.splitlines()
    last = max([i for i, row in enumerate(rows) if re.match(r"^\s*(DNS|IP)\.\d+\s*=", row)] + [-1])
    for i, row in enumerate(rows):
        out.append(row)
        if i == last and not done:
            out.extend(lines)
            done = True
    if not done:
        raise Microk8sError("csr.conf.template has no [ alt_names ] entries")
    return "\n".join(out) + ("\n" if text.endswith("\n") else ""), lines


def parse_cert_sans(text):
    """``openssl x509 -noout -ext subjectAltName`` -> set of ``(kind, normalised value)``."""
    sans = set()
    for line in (text or "").splitlines():
        if "Subject Alternative Name" in line:
            continue
        for item in line.split(","):
            item = item.strip()
            if item.startswith("DNS:"):
                sans.add(("DNS", norm_san("DNS", item[4:])))
            elif item.startswith("IP Address:"):
                sans.add(("IP", norm_san("IP", item[len("IP Address:"):])))
    return sans


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
        """``microk8s status --format yaml``, read from its exit code and output (status.py): exit 0
        with ``running: True`` when ready; the same report with ``running: False`` and exit 1 while
        the cluster is not ready; exit 0 with STOPPED_MESSAGE after ``microk8s stop``; exit 1 with
        the worker message on a worker node."""
        result = self.runner("status").run(
            check=False, format="yaml", wait_ready=wait_ready or None, timeout=timeout if wait_ready else None)
        text = result.stdout.strip()
        empty = {"ha_enabled": False, "ha_nodes": [], "voters": [], "addons": {}}
        if result.rc == 1 and WORKER_MESSAGE in (result.stdout + result.stderr):
            return dict(empty, running=None, worker=True, stopped=False, message=text)
        if result.rc == 0 and text == STOPPED_MESSAGE:
            return dict(empty, running=False, worker=False, stopped=True, message=text)
        if result.rc in (0, 1) and text.startswith("microk8s:"):
            status = parse_status_yaml(result.stdout)
            if status["running"] != (result.rc == 0):
                raise Microk8sError("'%s' exited %s but reports running: %s"
                                    % (" ".join(result.argv), result.rc, status["running"]))
            status.update(worker=False, stopped=False)
            return status
        detail = (result.stderr or result.stdout).strip()
        raise Microk8sError("'%s' exited %s: %s" % (" ".join(result.argv), result.rc, detail))

    def enable(self, name, args=None, flags=None):
        spec = name + (":" + ",".join(args) if args else "")
        return self.runner("enable").run([spec] + list(flags or []))

    def disable(self, name):
        return self.runner("disable").run([name])

    def add_node(self, token, ttl):
        """Register ``token``; the join URLs ``add-node --format short`` prints: the default-route
        interface's address first, then every other address of ``hostname -I`` in its order."""
        result = self.runner("add-node").run(token=token, token_ttl=ttl, format="short")
        urls = [line.split()[2] for line in result.stdout.splitlines()
                if line.startswith("microk8s join ") and len(line.split()) >= 3]
        if not urls:
            raise Microk8sError("cannot parse 'microk8s add-node --format short' output: %s"
                                % result.stdout.replace(token, "<token>")[:200])
        return urls

    def join(self, url, worker):
        return self.runner("join").run([url], check=False, worker=worker)

    def leave(self):
        return self.runner("leave").run(check=False)

    def remove_node(self, name, force):
        return self.runner("remove-node").run([name], check=False, force=force)

    def refresh_server_cert(self):
        """``microk8s refresh-certs --cert server.crt`` (refresh_certs.py): csr.conf re-rendered from
        csr.conf.template, server.crt re-issued, kubelite and the cluster agent restarted."""
        return self.runner("refresh-certs").run(["--cert", "server.crt"])

    def nodes(self, attempts=NODES_ATTEMPTS, delay=NODES_RETRY_DELAY):
        """The cluster's nodes (``microk8s kubectl get nodes -o json``). kubectl's transient
        connection errors (the API server of a node that has just been restarted or is busy:
        refused, reset, TLS handshake timeout) are retried ``attempts`` times, ``delay`` s apart;
        any other failure, or the last attempt's, raises CmdError."""
        runner = self.runner("kubectl", "get", "nodes")
        for attempt in range(1, attempts + 1):
            result = runner.run(["-o", "json"], check=False)
            if result.rc == 0:
                return parse_nodes_json(result.stdout)
            if attempt == attempts or not is_transient_api_error(result.stderr or result.stdout):
                raise CmdError(result.argv, result.rc, result.stdout, result.stderr)
            time.sleep(delay)
        raise AssertionError("not reached")


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
