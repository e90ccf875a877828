"""Helpers for tests/unit/test_jupyterhub_values.py: render scenarios through the real role.

Every scenario is one host of a temporary inventory (its own host_vars, its own render
directory), and ONE `ansible-playbook playbooks/render.yml -e labhub_render_hosts=all` run renders
them all side by side, exactly as an operator's render does for one inventory.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import tarfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def ansible_env() -> dict:
    env = dict(os.environ)
    venv_bin = REPO / ".venv" / "bin"
    env["PATH"] = f"{venv_bin}:{env.get('PATH', '')}"
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".cache" / "ansible_collections"))
    env.setdefault("ANSIBLE_ROLES_PATH", str(REPO / "roles"))
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.json"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORKS"] = "4"
    return env


def write_inventory(root: Path, scenarios: dict[str, dict]) -> Path:
    """One host per scenario; host_vars/<name>/main.yml holds the scenario's variables."""
    inv = root / "inventory"
    (inv / "host_vars").mkdir(parents=True)
    hosts = {name: {"ansible_connection": "local",
                    "ansible_python_interpreter": "{{ ansible_playbook_python }}"} for name in scenarios}
    (inv / "hosts.yml").write_text(yaml.safe_dump(
        {"all": {"children": {"labhub_cluster": {"children": {"labhub_control_plane": {"hosts": hosts}}}}}},
        sort_keys=False))  # scenario order: the first control-plane host (read by the playbook's validation) is a good one
    for name, variables in scenarios.items():
        hv = inv / "host_vars" / name
        hv.mkdir()
        data = {"labhub_render_dir": str(root / "out" / name),
                "jupyterhub_credentials_dir": str(root / "credentials" / name)}
        data.update(variables)
        (hv / "main.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    return inv


def run_render(inventory: Path, *extra: str, hosts: str | None = "all") -> dict:
    """Run playbooks/render.yml; return {host: {"failed": bool, "msgs": [...], "changed": int}}."""
    cmd = ["ansible-playbook", str(REPO / "playbooks" / "render.yml"), "-i", str(inventory),
           "-e", "labhub_render_portal=false"]
    if hosts:
        cmd += ["-e", f"labhub_render_hosts={hosts}"]
    cmd += list(extra)
    proc = subprocess.run(cmd, cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=900, check=False)
    # the validation table (printed before the JSON when there are problems) is not JSON
    start = proc.stdout.find("{\n") if not proc.stdout.startswith("{") else 0
    try:
        report = json.loads(proc.stdout[max(start, 0):])
    except json.JSONDecodeError as exc:  # pragma: no cover - shows ansible's own error
        raise AssertionError(f"ansible-playbook output is not JSON:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}") from exc
    result = {}
    for host, stats in report["stats"].items():
        result[host] = {"failed": stats.get("failures", 0) > 0, "changed": stats.get("changed", 0), "msgs": []}
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, res in task["hosts"].items():
                if res.get("failed"):
                    msg = res.get("msg")
                    result[host]["msgs"].extend(msg if isinstance(msg, list) else [str(msg)])
                    # rows of labhub.platform.validate's table: "VARIABLE: PROBLEM"
                    result[host]["msgs"].extend("%s: %s" % (r["variable"], r["problem"]) for r in res.get("problems") or [])
    result["_stdout"] = proc.stdout
    result["_stderr"] = proc.stderr
    return result


def deep_merge(base, override):
    """Helm's values merge: maps merge recursively, lists and scalars replace; null deletes."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = deep_merge(out[key], value)
            else:
                out[key] = value
        return out
    return override


def chart_schema_and_values(reference: Path) -> tuple[dict, dict]:
    """values.schema + values of z2jh 4.4.0: from the bundle's chart archive when
    LABHUB_BUNDLE_DIR is set, else from the shared reference directory."""
    bundle = os.environ.get("LABHUB_BUNDLE_DIR")
    if bundle:
        manifest = yaml.safe_load((REPO / "files" / "bundle-manifest.yml").read_text())
        chart = next(c for c in manifest["charts"] if c["name"] == "jupyterhub")
        with tarfile.open(Path(bundle) / chart["file"]) as tgz:
            schema = json.load(tgz.extractfile("jupyterhub/values.schema.json"))
            values = yaml.safe_load(tgz.extractfile("jupyterhub/values.yaml"))
        return schema, values
    ref = reference / "z2jh-4.4.0"
    return (yaml.safe_load((ref / "values.schema.yaml").read_text()),
            yaml.safe_load((ref / "values.yaml").read_text()))


def images_in(obj, path="") -> list[tuple[str, str]]:
    """Every image reference in a values tree or manifest: {name, tag} maps under an `image`
    key and plain `image: ref` strings. Returns (path, ref)."""
    found = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            sub = f"{path}.{key}" if path else str(key)
            if key == "image" and isinstance(value, dict) and value.get("name"):
                found.append((sub, f"{value['name']}:{value.get('tag')}"))
            elif key == "image" and isinstance(value, str):
                found.append((sub, value))
            else:
                found.extend(images_in(value, sub))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found.extend(images_in(value, f"{path}[{i}]"))
    return found


def secret_values(manifests: list[dict]) -> list[str]:
    out = []
    for m in manifests:
        if m.get("kind") == "Secret":
            for value in (m.get("data") or {}).values():
                out.append(base64.b64decode(value).decode())
    return out
