# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""SIMULATED `helm` (v3) for Labhub's tests: `microk8s helm3` / `/snap/bin/microk8s.helm3`. NOT Helm.

Implements the commands, flags and output formats kubernetes.core.helm / helm_info use:
`version`, `list -o yaml|json [--filter RE] [--all|--deployed|--failed|...]`, `get values|manifest|notes|
hooks`, `show chart|values ARCHIVE`, `install`, `upgrade [-i]`, `uninstall`, `status`, `history`,
`rollback`, `plugin list`, `repo update`, `dependency update`. Unknown flags fail as cobra does
(`Error: unknown flag: --x`, exit 1).

Releases are stored like Helm's default "secret" driver: Secret `sh.helm.release.v1.<name>.v<rev>`,
type `helm.sh/release.v1`, labels name/owner/status/version, in the release namespace, in the fake
API's object store (labhub_kube.py). DIFFERENCE: the payload is base64(JSON) (Helm: base64(gzip(JSON))).
Charts are not rendered: `tests/simulator/sim_charts/<chart name with _>.py` models which objects a
chart creates from its values (`objects(release, namespace, values, chart) -> list[dict]`); a chart
without a model is recorded with no objects. Chart archives are read for Chart.yaml and values.yaml.
Needs PyYAML on the node (python3-yaml), as kubernetes.core.helm itself does.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import os
import re
import sys
import tarfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import labhub_kube as kube  # noqa: E402  pylint: disable=wrong-import-position
import labhub_sim as sim  # noqa: E402  pylint: disable=wrong-import-position

HELM_VERSION = "v3.14.4"
VERSION_TEXT = ('version.BuildInfo{Version:"%s", GitCommit:"81c902a123462fd4052bc5e9aa9c513c4c8fc142", '
                'GitTreeState:"clean", GoVersion:"go1.21.9"}' % HELM_VERSION)
SECRET_RES = kube.Resource("", "v1", "secrets", "Secret", True)


class HelmError(Exception):
    def __init__(self, msg, rc=1):
        super().__init__(msg)
        self.msg = msg
        self.rc = rc


# =========================================================================================
# grammar (cobra/pflag): --flag=value, --flag value, -f value, -f=value, booleans
# =========================================================================================
GLOBAL = {"namespace": ("n", True), "kubeconfig": (None, True), "kube-context": (None, True), "debug": (None, False),
          "kube-apiserver": (None, True), "kube-token": (None, True), "kube-insecure-skip-tls-verify": (None, False),
          "kube-ca-file": (None, True), "burst-limit": (None, True), "qps": (None, True),
          "registry-config": (None, True), "repository-cache": (None, True), "repository-config": (None, True),
          "help": ("h", False)}
INSTALL = {"values": ("f", "list"), "set": (None, "list"), "set-string": (None, "list"), "set-file": (None, "list"),
           "set-json": (None, "list"), "set-literal": (None, "list"), "wait": (None, False),
           "wait-for-jobs": (None, False), "timeout": (None, True), "atomic": (None, False),
           "create-namespace": (None, False), "version": (None, True), "repo": (None, True),
           "no-hooks": (None, False), "skip-crds": (None, False), "force": (None, False), "replace": (None, False),
           "dry-run": (None, "opt"), "description": (None, True), "devel": (None, False),
           "dependency-update": (None, False), "post-renderer": (None, True), "history-max": (None, True),
           "insecure-skip-tls-verify": (None, False), "plain-http": (None, False), "reset-values": (None, "bool"),
           "reuse-values": (None, "bool"), "reset-then-reuse-values": (None, False), "install": ("i", False),
           "cleanup-on-fail": (None, False), "output": ("o", True), "generate-name": ("g", False),
           "render-subchart-notes": (None, False), "disable-openapi-validation": (None, False),
           "skip-schema-validation": (None, False), "take-ownership": (None, False), "username": (None, True),
           "password": (None, True), "verify": (None, False), "keyring": (None, True), "ca-file": (None, True),
           "cert-file": (None, True), "key-file": (None, True), "pass-credentials": (None, False),
           "enable-dns": (None, False), "labels": ("l", True)}
COMMANDS = {
    "version": {"short": (None, False), "template": (None, True), "client": ("c", False)},
    "list": {"output": ("o", True), "filter": (None, True), "all": ("a", False), "deployed": (None, False),
             "failed": (None, False), "pending": (None, False), "superseded": (None, False),
             "uninstalled": (None, False), "uninstalling": (None, False), "all-namespaces": ("A", False),
             "short": ("q", False), "max": ("m", True), "offset": (None, True), "date": ("d", False),
             "reverse": ("r", False), "selector": ("l", True), "no-headers": (None, False),
             "time-format": (None, True)},
    "get values": {"output": ("o", True), "all": ("a", False), "revision": (None, True)},
    "get manifest": {"revision": (None, True)},
    "get notes": {"revision": (None, True)},
    "get hooks": {"revision": (None, True)},
    "get all": {"revision": (None, True), "template": (None, True)},
    "show chart": {"version": (None, True), "repo": (None, True), "devel": (None, False),
                   "insecure-skip-tls-verify": (None, False), "plain-http": (None, False)},
    "show values": {"version": (None, True), "repo": (None, True), "jsonpath": (None, True)},
    "show all": {"version": (None, True), "repo": (None, True)},
    "install": INSTALL,
    "upgrade": INSTALL,
    "uninstall": {"keep-history": (None, False), "no-hooks": (None, False), "wait": (None, False),
                  "timeout": (None, True), "dry-run": (None, False), "description": (None, True),
                  "cascade": (None, True), "ignore-not-found": (None, False)},
    "status": {"output": ("o", True), "revision": (None, True), "show-desc": (None, False),
               "show-resources": (None, False)},
    "history": {"output": ("o", True), "max": (None, True)},
    "rollback": {"wait": (None, False), "timeout": (None, True), "force": (None, False), "no-hooks": (None, False),
                 "cleanup-on-fail": (None, False), "recreate-pods": (None, False), "history-max": (None, True),
                 "wait-for-jobs": (None, False), "dry-run": (None, False)},
    "plugin list": {},
    "repo update": {},
    "dependency update": {"skip-refresh": (None, False), "keyring": (None, True), "verify": (None, False)},
}
ALIASES = {"ls": "list", "un": "uninstall", "del": "uninstall", "delete": "uninstall", "uninst": "uninstall",
           "inspect": "show", "hist": "history", "dep": "dependency", "dependencies": "dependency",
           "plugins": "plugin"}


def parse(argv):
    """-> (command, positional args, {flag: value}) with cobra's errors."""
    words, i = [], 0
    # the command is made of the leading words (flags may come anywhere)
    spec = dict(GLOBAL)
    opts, positional = {}, []
    command = None
    items = list(argv)
    while i < len(items):
        item = items[i]
        if item == "--":
            positional.extend(items[i + 1:])
            break
        if item.startswith("-") and item != "-":
            if command is None:
                # a flag before the command: only globals are known yet
                known = GLOBAL
            else:
                known = spec
            name, eq, value = item.lstrip("-").partition("=")
            long_form = item.startswith("--")
            if not long_form:
                short = name[:1]
                if len(name) > 1 and not eq:
                    value, eq = name[1:], "="
                name = next((k for k, (s, _t) in known.items() if s == short), None)
                if name is None:
                    raise HelmError("Error: unknown shorthand flag: '%s' in %s" % (short, item))
            if name not in known:
                raise HelmError("Error: unknown flag: --%s" % name)
            kind = known[name][1]
            if kind is False or kind == "bool" or kind == "opt":
                if eq:
                    if kind == "opt":
                        val = value
                    elif value.lower() in ("true", "1", "t"):
                        val = True
                    elif value.lower() in ("false", "0", "f"):
                        val = False
                    else:
                        raise HelmError('Error: invalid argument "%s" for "--%s" flag: strconv.ParseBool: parsing '
                                        '"%s": invalid syntax' % (value, name, value))
                else:
                    val = True
            else:
                if not eq:
                    i += 1
                    if i >= len(items):
                        raise HelmError("Error: flag needs an argument: --%s" % name)
                    value = items[i]
                val = value
            if kind == "list":
                opts.setdefault(name, []).append(val)
            else:
                opts[name] = val
            i += 1
            continue
        if command is None:
            words.append(ALIASES.get(item, item))
            joined = " ".join(words)
            if joined in COMMANDS:
                command = joined
                spec = dict(GLOBAL, **COMMANDS[joined])
            elif not any(c.startswith(joined + " ") for c in COMMANDS):
                if len(words) == 1:
                    raise HelmError('Error: unknown command "%s" for "helm"\nRun \'helm --help\' for usage.' % item)
                raise HelmError('Error: unknown command "%s" for "helm %s"' % (item, words[0]))
        else:
            positional.append(item)
        i += 1
    if command is None:
        if words:
            raise HelmError("Error: the simulated helm needs a subcommand after \"%s\"" % " ".join(words))
        return "help", [], opts
    return command, positional, opts


# =========================================================================================
# values
# =========================================================================================
def deep_merge(base, override):
    """Helm's coalescing: maps merge recursively, everything else is replaced; null removes a key."""
    result = copy.deepcopy(base) if isinstance(base, dict) else {}
    for key, val in (override or {}).items():
        if val is None:
            result.pop(key, None)
        elif isinstance(val, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], val)
        else:
            result[key] = copy.deepcopy(val)
    return result


def _set_path(values, path, value):
    parts = re.split(r"(?<!\\)\.", path)
    cur = values
    for part in parts[:-1]:
        part = part.replace("\\.", ".")
        if not isinstance(cur.get(part), dict):
            cur[part] = {}
        cur = cur[part]
    cur[parts[-1].replace("\\.", ".")] = value


def _typed(text):
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if re.match(r"^-?[0-9]+$", text) and (len(text) < 2 or text[0] != "0"):
        return int(text)
    return text


def user_values(opts):
    values = {}
    for path in opts.get("values", []):
        try:
            with open(path) as handle:
                loaded = yaml.safe_load(handle)
        except FileNotFoundError:
            raise HelmError("Error: open %s: no such file or directory" % path)
        except yaml.YAMLError as exc:
            raise HelmError("Error: failed to parse %s: error converting YAML to JSON: %s" % (path, exc))
        if loaded is not None and not isinstance(loaded, dict):
            raise HelmError("Error: failed to parse %s: error unmarshaling JSON: json: cannot unmarshal array into "
                            "Go value of type map[string]interface {}" % path)
        values = deep_merge(values, loaded or {})
    for flag, conv in (("set", _typed), ("set-string", str), ("set-literal", str), ("set-json", json.loads)):
        for item in opts.get(flag, []):
            pairs = [item] if flag in ("set-json", "set-literal") else re.split(r"(?<!\\),", item)
            for pair in pairs:
                key, eq, val = pair.partition("=")
                if not eq:
                    raise HelmError('Error: failed parsing --%s data: key "%s" has no value' % (flag, key))
                try:
                    _set_path(values, key, conv(val))
                except ValueError as exc:
                    raise HelmError("Error: failed parsing --set-json data %s: %s" % (item, exc))
    return values


# =========================================================================================
# charts
# =========================================================================================
def load_chart(ref):
    """(Chart.yaml dict, values.yaml dict) from a .tgz archive or a chart directory."""
    if os.path.isdir(ref):
        def read(name):
            path = os.path.join(ref, name)
            if not os.path.exists(path):
                return None
            with open(path) as handle:
                return handle.read()
    elif os.path.isfile(ref):
        try:
            archive = tarfile.open(ref, "r:gz")
        except (tarfile.TarError, OSError) as exc:
            raise HelmError("Error: gzip: invalid header (%s)" % exc)
        members = {m.name: m for m in archive.getmembers()}

        def read(name):
            for mname, member in members.items():
                if mname.count("/") == 1 and mname.split("/", 1)[1] == name:
                    return archive.extractfile(member).read().decode()
            return None
    else:
        if "/" in ref and not ref.startswith((".", "/")):
            raise HelmError('Error: repo %s not found' % ref.split("/")[0])
        raise HelmError("Error: path \"%s\" not found" % ref)
    text = read("Chart.yaml")
    if text is None:
        raise HelmError("Error: Chart.yaml file is missing")
    chart = yaml.safe_load(text) or {}
    for field in ("name", "version"):
        if not chart.get(field):
            raise HelmError("Error: validation: chart.metadata.%s is required" % field)
    values = yaml.safe_load(read("values.yaml") or "") or {}
    return chart, values


# =========================================================================================
# release storage (the "secret" driver)
# =========================================================================================
def _secret_name(name, rev):
    return "sh.helm.release.v1.%s.v%d" % (name, rev)


def _decode(secret):
    return json.loads(base64.b64decode(base64.b64decode(secret["data"]["release"])).decode())


def releases(store, namespace=None, name=None):
    """Every stored revision, newest last."""
    out = []
    for obj in store.list_kind("", "secrets", namespace):
        if obj.get("type") != "helm.sh/release.v1":
            continue
        labels = obj["metadata"].get("labels") or {}
        if name is not None and labels.get("name") != name:
            continue
        out.append(_decode(obj))
    return sorted(out, key=lambda r: (r["namespace"], r["name"], r["version"]))


def save_release(store, rel):
    payload = base64.b64encode(base64.b64encode(json.dumps(rel, sort_keys=True).encode())).decode()
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
              "metadata": {"name": _secret_name(rel["name"], rel["version"]), "namespace": rel["namespace"],
                           "labels": {"name": rel["name"], "owner": "helm", "status": rel["info"]["status"],
                                      "version": str(rel["version"])}},
              "data": {"release": payload}}
    store.apply(secret)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def _helm_time(iso):
    stamp = datetime.datetime.fromisoformat(iso)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.%f +0000 UTC")


def _store_op(func):
    """Run func(store) under the cluster lock with the simulated controllers, and save."""
    if kube.kube_faults().get("api_down"):
        raise HelmError('Error: Kubernetes cluster unreachable: Get "%s/version": dial tcp: connect: connection '
                        'refused' % _server_url())
    with sim.locked(sim.cluster_dir()):
        cid = kube.own_cluster_id()
        cluster = sim.load_cluster(cid) if cid else None
        if cluster is None:
            raise HelmError("Error: Kubernetes cluster unreachable: no cluster on this node")
        store = kube.reconcile(cluster)
        result = func(store)
        if store.dirty:
            kube.Reconciler(store).run()
            sim.save_cluster(cluster)
        return result


def _server_url():
    info = kube.server_info() or {}
    return "http://%s:%s" % (info.get("address", "127.0.0.1"), info.get("port", kube.DEFAULT_PORT))


# =========================================================================================
# chart objects
# =========================================================================================
def _annotate(objs, name, namespace):
    out = []
    for obj in objs:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("labels", {})["app.kubernetes.io/managed-by"] = "Helm"
        meta.setdefault("annotations", {}).update({"meta.helm.sh/release-name": name,
                                                   "meta.helm.sh/release-namespace": namespace})
        out.append(obj)
    return out


def render(name, namespace, chart, values):
    model = kube.chart_model(chart["name"])
    if model is None:
        return []
    objs = model.objects(name, namespace, values, chart) or []
    return _annotate(objs, name, namespace)


def _obj_id(obj, namespace):
    meta = obj["metadata"]
    return (obj.get("apiVersion"), obj.get("kind"), meta.get("namespace") or namespace, meta["name"])


def apply_manifest(store, objs, old_objs, namespace, skip_crds=False):
    new_ids = set()
    ordered = sorted(objs, key=lambda o: (o.get("kind") != "CustomResourceDefinition", o.get("kind") != "Namespace"))
    for obj in ordered:
        if skip_crds and obj.get("kind") == "CustomResourceDefinition":
            continue
        res = kube.resource_for_kind(store.cluster, obj.get("apiVersion", ""), obj.get("kind"))
        if res is None:
            raise kube.ApiError(400, "BadRequest", 'resource mapping not found for name: "%s" namespace: "%s" from '
                                '"": no matches for kind "%s" in version "%s"\nensure CRDs are installed first'
                                % (obj["metadata"]["name"], namespace, obj.get("kind"), obj.get("apiVersion")))
        if res.namespaced:
            obj["metadata"].setdefault("namespace", namespace)
        new_ids.add(_obj_id(obj, namespace))
        store.apply(obj)
    for old in old_objs or []:
        if _obj_id(old, namespace) not in new_ids and old.get("kind") != "CustomResourceDefinition":
            store.delete_obj(old)


def _ready_problems(store, objs, namespace, wait_for_jobs):
    """What helm's --wait still waits for (kube.ReadyChecker: Deployments, DaemonSets, StatefulSets,
    ReplicaSets, Pods, PVCs, Services; Jobs only with --wait-for-jobs)."""
    waiting = []
    for obj in objs:
        kind = obj.get("kind")
        res = kube.resource_for_kind(store.cluster, obj.get("apiVersion", ""), kind)
        if res is None:
            continue
        ns = obj["metadata"].get("namespace") or namespace if res.namespaced else None
        live = store.raw(res, ns, obj["metadata"]["name"])
        if live is None:
            waiting.append("%s %s/%s not found" % (kind, ns, obj["metadata"]["name"]))
            continue
        status, spec = live.get("status") or {}, live.get("spec") or {}
        if kind == "Deployment":
            if status.get("observedGeneration") != live["metadata"].get("generation") or \
                    (status.get("readyReplicas") or 0) < spec.get("replicas", 1):
                waiting.append("Deployment is not ready: %s/%s. %d out of %d expected pods are ready"
                               % (ns, live["metadata"]["name"], status.get("readyReplicas") or 0,
                                  spec.get("replicas", 1)))
        elif kind == "DaemonSet":
            if (status.get("numberReady") or 0) < status.get("desiredNumberScheduled", 0) or \
                    status.get("updatedNumberScheduled", 0) < status.get("desiredNumberScheduled", 0):
                waiting.append("DaemonSet is not ready: %s/%s. %d out of %d expected pods are ready"
                               % (ns, live["metadata"]["name"], status.get("numberReady") or 0,
                                  status.get("desiredNumberScheduled", 0)))
        elif kind == "StatefulSet":
            if (status.get("readyReplicas") or 0) < spec.get("replicas", 1):
                waiting.append("StatefulSet is not ready: %s/%s. %d out of %d expected pods are ready"
                               % (ns, live["metadata"]["name"], status.get("readyReplicas") or 0,
                                  spec.get("replicas", 1)))
        elif kind == "Job" and wait_for_jobs:
            if any(c.get("type") == "Failed" and c.get("status") == "True" for c in status.get("conditions", [])):
                raise HelmError("job %s failed: BackoffLimitExceeded" % live["metadata"]["name"])
            if not status.get("succeeded"):
                waiting.append("Job is not ready: %s/%s" % (ns, live["metadata"]["name"]))
    return waiting


def parse_duration(text):
    """Go's time.ParseDuration for what helm users write (300s, 5m, 5m0s, 1h30m, 1.5h)."""
    if text is None:
        return 300.0
    if re.match(r"^[0-9]+$", text):
        raise HelmError('Error: invalid argument "%s" for "--timeout" flag: time: missing unit in duration "%s"'
                        % (text, text))
    parts = re.findall(r"([0-9.]+)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise HelmError('Error: invalid argument "%s" for "--timeout" flag: time: invalid duration "%s"' % (text, text))
    mult = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(a) * mult[b] for a, b in parts)


def wait_ready(objs, namespace, timeout, wait_for_jobs):
    deadline = time.time() + timeout
    while True:
        waiting = _store_op(lambda s: _ready_problems(s, objs, namespace, wait_for_jobs))
        if not waiting:
            return None
        if time.time() >= deadline:
            return waiting
        time.sleep(min(0.5, max(0.05, deadline - time.time())))


# =========================================================================================
# commands
# =========================================================================================
def _namespace(opts):
    return opts.get("namespace") or os.environ.get("HELM_NAMESPACE") or "default"


def _last(store, namespace, name):
    revs = releases(store, namespace, name)
    return revs[-1] if revs else None


def _deployed(store, namespace, name):
    revs = [r for r in releases(store, namespace, name) if r["info"]["status"] == "deployed"]
    return revs[-1] if revs else None


def _list_entry(rel):
    return {"name": rel["name"], "namespace": rel["namespace"], "revision": str(rel["version"]),
            "updated": _helm_time(rel["info"]["last_deployed"]), "status": rel["info"]["status"],
            "chart": "%s-%s" % (rel["chart"]["metadata"]["name"], rel["chart"]["metadata"]["version"]),
            "app_version": rel["chart"]["metadata"].get("appVersion", "")}


def _dump(data, fmt):
    if fmt == "json":
        return json.dumps(data, separators=(",", ":"))
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=True).rstrip("\n")


def cmd_version(pos, opts):
    if opts.get("short"):
        print("%s+g81c902a" % HELM_VERSION)
    else:
        print(VERSION_TEXT)
    return 0


def cmd_list(pos, opts):
    fmt = opts.get("output", "table")
    if fmt not in ("table", "json", "yaml"):
        raise HelmError('Error: invalid argument "%s" for "-o, --output" flag: invalid format type' % fmt)
    states = [s for s in ("deployed", "failed", "pending", "superseded", "uninstalled", "uninstalling")
              if opts.get(s)]
    if opts.get("all"):
        states = ["deployed", "failed", "pending", "superseded", "uninstalled", "uninstalling"]
    if not states:
        states = ["deployed", "failed"]
    namespace = None if opts.get("all-namespaces") else _namespace(opts)

    def collect(store):
        latest = {}
        for rel in releases(store, namespace):
            latest[(rel["namespace"], rel["name"])] = rel
        return list(latest.values())
    found = _store_op(collect)
    pattern = opts.get("filter")
    rows = []
    for rel in sorted(found, key=lambda r: r["name"]):
        status = rel["info"]["status"]
        wanted = status in states or (status.startswith("pending") and "pending" in states)
        if not wanted:
            continue
        if pattern and not re.search(pattern, rel["name"]):
            continue
        rows.append(_list_entry(rel))
    if opts.get("short"):
        for row in rows:
            print(row["name"])
    elif fmt == "table":
        print("NAME\tNAMESPACE\tREVISION\tUPDATED\tSTATUS\tCHART\tAPP VERSION")
        for row in rows:
            print("\t".join([row["name"], row["namespace"], row["revision"], row["updated"], row["status"],
                             row["chart"], row["app_version"]]))
    else:
        print(_dump(rows, fmt))
    return 0


def _find_release(store, namespace, name, revision=None):
    revs = releases(store, namespace, name)
    if revision is not None:
        revs = [r for r in revs if str(r["version"]) == str(revision)]
    if not revs:
        raise HelmError("Error: release: not found")
    return revs[-1]


def cmd_get(pos, opts, what):
    if len(pos) != 1:
        raise HelmError('Error: "helm get %s" requires 1 argument\n\nUsage:  helm get %s RELEASE_NAME [flags]'
                        % (what, what))
    rel = _store_op(lambda s: _find_release(s, _namespace(opts), pos[0], opts.get("revision")))
    if what == "values":
        fmt = opts.get("output", "table")
        data = rel["computed_values"] if opts.get("all") else (rel["config"] or None)
        if fmt == "table":
            print("COMPUTED VALUES:" if opts.get("all") else "USER-SUPPLIED VALUES:")
            print(yaml.safe_dump(data, default_flow_style=False).rstrip("\n") if data is not None else "null")
        elif fmt in ("yaml", "json"):
            print(_dump(data, fmt) if data is not None else "null")
        else:
            raise HelmError('Error: invalid argument "%s" for "-o, --output" flag: invalid format type' % fmt)
    elif what == "manifest":
        print("".join("---\n# Source: %s/templates/%s.yaml\n%s" % (rel["chart"]["metadata"]["name"],
                                                                   o["kind"].lower(),
                                                                   yaml.safe_dump(o, default_flow_style=False))
                      for o in rel["manifest"]), end="")
    elif what == "notes":
        if rel["info"].get("notes"):
            print("NOTES:\n%s" % rel["info"]["notes"])
    elif what == "hooks":
        pass
    elif what == "all":
        _print_status(rel)
    return 0


def cmd_show(pos, opts, what):
    if len(pos) != 1:
        raise HelmError('Error: "helm show %s" requires 1 argument\n\nUsage:  helm show %s [CHART] [flags]'
                        % (what, what))
    chart, values = load_chart(pos[0])
    if opts.get("version") and str(opts["version"]) != str(chart["version"]):
        raise HelmError('Error: chart "%s" matching %s not found in the local archive (simulated helm)'
                        % (chart["name"], opts["version"]))
    if what in ("chart", "all"):
        print(yaml.safe_dump(chart, default_flow_style=False, sort_keys=False).rstrip("\n"))
    if what in ("values", "all"):
        print(yaml.safe_dump(values, default_flow_style=False).rstrip("\n"))
    return 0


def _print_status(rel):
    print("NAME: %s" % rel["name"])
    print("LAST DEPLOYED: %s" % datetime.datetime.fromisoformat(rel["info"]["last_deployed"])
          .strftime("%a %b %d %H:%M:%S %Y"))
    print("NAMESPACE: %s" % rel["namespace"])
    print("STATUS: %s" % rel["info"]["status"])
    print("REVISION: %d" % rel["version"])
    print("TEST SUITE: None")
    if rel["info"].get("notes"):
        print("NOTES:\n%s" % rel["info"]["notes"])


def cmd_status(pos, opts):
    if len(pos) != 1:
        raise HelmError('Error: "helm status" requires 1 argument\n\nUsage:  helm status RELEASE_NAME [flags]')
    rel = _store_op(lambda s: _find_release(s, _namespace(opts), pos[0], opts.get("revision")))
    fmt = opts.get("output", "table")
    if fmt == "table":
        _print_status(rel)
    else:
        data = {"name": rel["name"], "namespace": rel["namespace"], "version": rel["version"],
                "info": rel["info"], "chart": rel["chart"], "config": rel["config"],
                "manifest": "".join("---\n" + yaml.safe_dump(o) for o in rel["manifest"])}
        print(_dump(data, fmt))
    return 0


def cmd_history(pos, opts):
    if len(pos) != 1:
        raise HelmError('Error: "helm history" requires 1 argument')
    revs = _store_op(lambda s: releases(s, _namespace(opts), pos[0]))
    if not revs:
        raise HelmError("Error: release: not found")
    rows = [{"revision": r["version"], "updated": r["info"]["last_deployed"], "status": r["info"]["status"],
             "chart": "%s-%s" % (r["chart"]["metadata"]["name"], r["chart"]["metadata"]["version"]),
             "app_version": r["chart"]["metadata"].get("appVersion", ""), "description": r["info"]["description"]}
            for r in revs]
    fmt = opts.get("output", "table")
    if fmt == "table":
        print("REVISION\tUPDATED\tSTATUS\tCHART\tAPP VERSION\tDESCRIPTION")
        for row in rows:
            print("%d\t%s\t%s\t%s\t%s\t%s" % (row["revision"], row["updated"], row["status"], row["chart"],
                                              row["app_version"], row["description"]))
    else:
        print(_dump(rows, fmt))
    return 0


def _set_status(store, rel, status, description=None):
    rel["info"]["status"] = status
    if description:
        rel["info"]["description"] = description
    save_release(store, rel)


def cmd_install(pos, opts, upgrade):
    verb = "upgrade" if upgrade else "install"
    if opts.get("generate-name") and not upgrade:
        pos = ["%s-%d" % ("release", int(time.time()))] + pos
    if len(pos) != 2:
        raise HelmError('Error: "helm %s" requires 2 arguments\n\nUsage:  helm %s [RELEASE] [CHART] [flags]'
                        % (verb, verb))
    name, ref = pos
    if not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", name) or len(name) > 53:
        raise HelmError("Error: INSTALLATION FAILED: release name \"%s\": invalid release name, must match regex "
                        "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ and the length must "
                        "not be longer than 53" % name)
    namespace = _namespace(opts)
    timeout = parse_duration(opts.get("timeout"))
    chart, chart_values = load_chart(ref)
    if opts.get("version") and str(opts["version"]) != str(chart["version"]):
        raise HelmError('Error: chart "%s" matching %s not found (simulated helm reads local archives only)'
                        % (chart["name"], opts["version"]))
    config = user_values(opts)
    atomic = bool(opts.get("atomic"))
    wait = bool(opts.get("wait") or atomic)

    def deploy(store):
        last = _last(store, namespace, name)
        previous = _deployed(store, namespace, name)
        if not upgrade and last is not None and last["info"]["status"] != "uninstalled":
            raise HelmError("Error: INSTALLATION FAILED: cannot re-use a name that is still in use")
        if upgrade and last is None and not opts.get("install"):
            raise HelmError('Error: UPGRADE FAILED: "%s" has no deployed releases' % name)
        prefix = "INSTALLATION FAILED" if last is None else "UPGRADE FAILED"
        if not store.namespace_exists(namespace):
            if opts.get("create-namespace"):
                store.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
            else:
                raise HelmError('Error: %s: create: failed to create: namespaces "%s" not found' % (prefix, namespace))
        eff = config
        if upgrade and previous is not None and (opts.get("reuse-values") is True or
                                                 opts.get("reset-then-reuse-values")):
            eff = deep_merge(previous["config"], config)
        computed = deep_merge(chart_values, eff)
        try:
            objs = render(name, namespace, chart, computed)
        except Exception as exc:  # pylint: disable=broad-except  # a model error is a template error
            raise HelmError("Error: %s: template: %s: %s" % (prefix, chart["name"], exc))
        version = (last["version"] + 1) if last is not None else 1
        if last is not None and last["info"]["status"] == "uninstalled":
            version = last["version"] + 1
        rel = {"name": name, "namespace": namespace, "version": version,
               "info": {"first_deployed": (last or {}).get("info", {}).get("first_deployed") or _now(),
                        "last_deployed": _now(), "status": "pending-install" if last is None else "pending-upgrade",
                        "description": "Initial install underway" if last is None else "Preparing upgrade",
                        "notes": _notes(chart, name, namespace)},
               "chart": {"metadata": chart, "values": chart_values},
               "config": eff, "computed_values": computed, "manifest": objs}
        try:
            apply_manifest(store, objs, (previous or last or {}).get("manifest"), namespace, opts.get("skip-crds"))
        except kube.ApiError as exc:
            rel["info"].update(status="failed", description="%s failed: %s" % ("Install" if last is None
                                                                               else "Upgrade", exc.message))
            save_release(store, rel)
            raise HelmError("Error: %s: %s" % (prefix, exc.message))
        save_release(store, rel)
        return rel, previous, last is None

    rel, previous, first = _store_op(deploy)
    if wait:
        waiting = wait_ready(rel["manifest"], namespace, timeout, bool(opts.get("wait-for-jobs")))
        if waiting:
            reason = "context deadline exceeded"
            prefix = "INSTALLATION FAILED" if first else "UPGRADE FAILED"

            def fail(store):
                cur = _find_release(store, namespace, name, rel["version"])
                cur["info"].update(status="failed", description="Release \"%s\" failed: %s" % (name, reason))
                save_release(store, cur)
                if atomic:
                    if first:
                        for obj in cur["manifest"]:
                            store.delete_obj(obj)
                        for old in releases(store, namespace, name):
                            store.delete_obj({"apiVersion": "v1", "kind": "Secret", "metadata": {
                                "name": _secret_name(name, old["version"]), "namespace": namespace}})
                    elif previous is not None:
                        _set_status(store, previous, "superseded")
                        back = copy.deepcopy(previous)
                        back["version"] = cur["version"] + 1
                        back["info"].update(status="deployed", last_deployed=_now(),
                                            description="Rollback to %d" % previous["version"])
                        apply_manifest(store, back["manifest"], cur["manifest"], namespace)
                        save_release(store, back)
            _store_op(fail)
            sys.stderr.write("\n".join("wait: %s" % w for w in waiting[:5]) + "\n")
            if atomic and first:
                raise HelmError("Error: INSTALLATION FAILED: release %s failed, and has been uninstalled due to "
                                "atomic being set: %s" % (name, reason))
            if atomic:
                raise HelmError("Error: UPGRADE FAILED: release %s failed, and has been rolled back due to atomic "
                                "being set: %s" % (name, reason))
            raise HelmError("Error: %s: %s" % (prefix, reason))

    def done(store):
        cur = _find_release(store, namespace, name, rel["version"])
        cur["info"].update(status="deployed", description="Install complete" if first else "Upgrade complete")
        save_release(store, cur)
        for old in releases(store, namespace, name):
            if old["version"] != cur["version"] and old["info"]["status"] == "deployed":
                _set_status(store, old, "superseded")
        return cur
    final = _store_op(done)
    if upgrade and first:
        print('Release "%s" does not exist. Installing it now.' % name)
    elif upgrade:
        print('Release "%s" has been upgraded. Happy Helming!' % name)
    _print_status(final)
    return 0


def _notes(chart, name, namespace):
    model = kube.chart_model(chart["name"])
    if model is not None and hasattr(model, "notes"):
        return model.notes(name, namespace, chart)
    return ""


def cmd_uninstall(pos, opts):
    if not pos:
        raise HelmError('Error: "helm uninstall" requires at least 1 argument\n\nUsage:  helm uninstall '
                        'RELEASE_NAME [...] [flags]')
    namespace = _namespace(opts)
    for name in pos:
        def remove(store, name=name):
            revs = releases(store, namespace, name)
            live = [r for r in revs if r["info"]["status"] != "uninstalled"]
            if not live:
                if opts.get("ignore-not-found"):
                    return False
                raise HelmError("Error: uninstall: Release not loaded: %s: release: not found" % name)
            current = live[-1]
            for obj in current["manifest"]:
                if obj.get("kind") != "CustomResourceDefinition":  # helm keeps CRDs
                    store.delete_obj(obj)
            if opts.get("keep-history"):
                current["info"].update(status="uninstalled", description="Uninstallation complete")
                save_release(store, current)
            else:
                for rev in revs:
                    store.delete_obj({"apiVersion": "v1", "kind": "Secret", "metadata": {
                        "name": _secret_name(name, rev["version"]), "namespace": namespace}})
            return True
        if _store_op(remove):
            print('release "%s" uninstalled' % name)
    return 0


def cmd_rollback(pos, opts):
    if not pos:
        raise HelmError('Error: "helm rollback" requires at least 1 argument')
    name, namespace = pos[0], _namespace(opts)

    def back(store):
        revs = releases(store, namespace, name)
        if not revs:
            raise HelmError("Error: release: not found")
        target = [r for r in revs if str(r["version"]) == pos[1]] if len(pos) > 1 else revs[-2:-1]
        if not target:
            raise HelmError("Error: release has no %s version" % (pos[1] if len(pos) > 1 else "previous"))
        new = copy.deepcopy(target[0])
        new["version"] = revs[-1]["version"] + 1
        new["info"].update(status="deployed", last_deployed=_now(), description="Rollback to %d" % target[0]["version"])
        apply_manifest(store, new["manifest"], revs[-1]["manifest"], namespace)
        for rev in revs:
            if rev["info"]["status"] == "deployed":
                _set_status(store, rev, "superseded")
        save_release(store, new)
    _store_op(back)
    print("Rollback was a success! Happy Helming!")
    return 0


def main(argv):
    try:
        command, pos, opts = parse(argv)
        if opts.get("help") or command == "help":
            print("The Kubernetes package manager (SIMULATED helm %s, labhub tests)" % HELM_VERSION)
            return 0
        if command == "version":
            return cmd_version(pos, opts)
        if command == "plugin list":
            print("NAME\tVERSION\tDESCRIPTION")
            return 0
        if command == "repo update":
            raise HelmError("Error: no repositories found. You must add one before updating")
        if command == "dependency update":
            return 0
        if command == "list":
            return cmd_list(pos, opts)
        if command.startswith("get "):
            return cmd_get(pos, opts, command.split()[1])
        if command.startswith("show "):
            return cmd_show(pos, opts, command.split()[1])
        if command in ("install", "upgrade"):
            return cmd_install(pos, opts, command == "upgrade")
        if command == "uninstall":
            return cmd_uninstall(pos, opts)
        if command == "status":
            return cmd_status(pos, opts)
        if command == "history":
            return cmd_history(pos, opts)
        if command == "rollback":
            return cmd_rollback(pos, opts)
        raise HelmError('Error: unknown command "%s" for "helm"' % command)
    except HelmError as exc:
        sys.stderr.write(exc.msg + "\n")
        return exc.rc
    except kube.ApiError as exc:
        sys.stderr.write("Error: %s\n" % exc.message)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
