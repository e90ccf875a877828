"""Render the `portal` role's Kubernetes objects and kubeconfig with Ansible's own template code.

Run by the collection's controller venv (``../.venv``, which has ansible-core), not by the portal's
venv: ``portal/tests/kube.py`` starts it once per test session and talks JSON lines over
stdin/stdout. Templates and variables are the role's files (``defaults/main.yml``,
``vars/main.yml``, ``templates/kubernetes/*.yml.j2``, ``templates/kubeconfig.j2``), rendered through
the ``ansible.builtin.template`` lookup, the code ``tasks/kubernetes.yml`` calls for each object.
The kubeconfig's server comes from the task's own ``vars:`` expressions (read from
``tasks/kubernetes.yml``), evaluated on the admin kubeconfig exactly as the role does.

Requests (one JSON object per line) and answers (one per line):

* ``{"op": "manifests", "vars": {...}}`` -> ``{"objects": [...]}`` (apply order,
  ``__portal_kube_manifests``; ``vars`` are extra vars such as ``portal_hub_namespace``)
* ``{"op": "kubeconfig", "vars": {...}, "admin_kubeconfig": PATH, "token_secret": SECRET}``
  -> ``{"kubeconfig": TEXT}`` (SECRET is the token Secret as the API returns it)
* any failure -> ``{"error": "Failed to render ... due to: ..."}`` (never the token)
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader, lookup_loader
from ansible.template import Templar, trust_as_template

ROLE = Path(__file__).resolve().parents[2] / "roles" / "portal"
KUBECONFIG_TASK = "Write the portal's kubeconfig"


def _role_vars(loader: DataLoader, extra: dict[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    for name in ("defaults/main.yml", "vars/main.yml"):  # role defaults, then role vars (Ansible's precedence)
        variables.update(loader.load_from_file(str(ROLE / name), trusted_as_template=True) or {})
    variables.update(extra)  # extra vars win over both
    variables["role_path"] = str(ROLE)
    variables["ansible_search_path"] = [str(ROLE)]
    return variables


def _template_lookup(loader: DataLoader, variables: dict[str, Any], name: str) -> str:
    templar = Templar(loader=loader, variables=variables)
    lookup = lookup_loader.get("ansible.builtin.template", loader=loader, templar=templar)
    (text,) = lookup.run([name], variables=variables)
    return str(text)


def manifests(extra: dict[str, Any]) -> list[dict[str, Any]]:
    loader = DataLoader()
    loader.set_basedir(str(ROLE))
    variables = _role_vars(loader, extra)
    names = Templar(loader=loader, variables=variables).template(trust_as_template("{{ __portal_kube_manifests }}"))
    # tasks/kubernetes.yml: lookup('ansible.builtin.template', 'kubernetes/' ~ item ~ '.yml.j2') | from_yaml
    return [yaml.safe_load(_template_lookup(loader, variables, f"kubernetes/{name}.yml.j2")) for name in names]


def _kubeconfig_task_vars() -> dict[str, Any]:
    tasks = yaml.safe_load((ROLE / "tasks" / "kubernetes.yml").read_text())
    for task in tasks:
        for inner in task.get("block", [task]):
            if inner.get("name") == KUBECONFIG_TASK:
                return dict(inner.get("vars") or {})
    raise LookupError(f"no task '{KUBECONFIG_TASK}' in {ROLE / 'tasks' / 'kubernetes.yml'}")


def kubeconfig(extra: dict[str, Any], admin_kubeconfig: str, token_secret: dict[str, Any]) -> str:
    loader = DataLoader()
    loader.set_basedir(str(ROLE))
    variables = _role_vars(loader, extra)
    # what the role registered: the slurped admin kubeconfig and the token Secret (k8s_info resources)
    variables["__portal_kube_admin_config"] = {
        "content": base64.b64encode(Path(admin_kubeconfig).read_bytes()).decode()}
    variables["__portal_kube_token"] = {"resources": [token_secret]}
    for key, expression in _kubeconfig_task_vars().items():  # the task's vars: (server from the admin kubeconfig)
        variables[key] = trust_as_template(expression)  # templated lazily, as task vars are
    return _template_lookup(loader, variables, "kubeconfig.j2")


def handle(request: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    extra = copy.deepcopy(request.get("vars") or {})
    try:
        if op == "manifests":
            return {"objects": manifests(extra)}
        if op == "kubeconfig":
            return {"kubeconfig": kubeconfig(extra, request["admin_kubeconfig"], request["token_secret"])}
        return {"error": f"Failed to render request '{op}' due to: unknown operation"}
    except Exception as exc:  # answered, not raised: the caller reports it with its own context
        message = f"{type(exc).__name__}: {exc}"
        for secret in _secrets(request):
            message = message.replace(secret, "<token>")
        return {"error": f"Failed to render the portal role's '{op}' due to: {message}"[:2000]}


def _secrets(request: dict[str, Any]) -> list[str]:
    """The token (encoded and decoded) of a kubeconfig request: never part of an error message."""
    data = (request.get("token_secret") or {}).get("data") or {}
    out = [str(data["token"])] if data.get("token") else []
    with contextlib.suppress(ValueError):
        out += [base64.b64decode(out[0]).decode()] if out else []
    return [s for s in out if s]


def main() -> int:
    init_plugin_loader()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(handle(json.loads(line))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
