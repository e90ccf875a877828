"""The `portal` role's Kubernetes objects, kubeconfig and preflight, run through real ansible-playbook.

The role's `render` entry point writes the ServiceAccount, token Secret, Role, RoleBinding and the
node-reader ClusterRole/ClusterRoleBinding to a directory; these tests check them against the
Kubernetes Python client's models (every field must be a real API field) and for least privilege.
The kubeconfig template is rendered with a token/CA and loaded by the real Kubernetes client.
The main entry point's checks (labhub.platform.validate, check `portal`) are exercised in check
mode: they must fail before any task that could change the host, name the variable in the table,
and never print the secret.
No Kubernetes API is involved (nothing here talks to a cluster).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

kubernetes = pytest.importorskip("kubernetes")
from kubernetes.client import models as k8s_models  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

GOOD_SECRETS = {
    "portal_database_password": "Zq8rT2vLx9WcN4bKm7Hs",
    "portal_token": "6f1c9e2ab7d34f08a1c5e9b2d7f3a6c4",
    "portal_hub_api_token": "b3d9f6a1c8e24f7091a6c3e5d8b2f4a7",
    "portal_cookie_secret": "e7a2c5f9b1d84e3a96c0f2b7d5a8e1c3",
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".cache" / "ansible_collections"))
    env["ANSIBLE_ROLES_PATH"] = str(REPO / "roles")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_LOCALHOST_WARNING"] = "false"
    env["ANSIBLE_INVENTORY_UNPARSED_WARNING"] = "false"
    env["ANSIBLE_RETRY_FILES_ENABLED"] = "false"
    return env


def _playbook(tmp_path: Path, tasks: list[dict], name: str = "play.yml") -> Path:
    play = [{"name": "portal role test", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "tasks": tasks}]
    path = tmp_path / name
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    return path


def _run(playbook: Path, extra_vars: dict, *args: str) -> subprocess.CompletedProcess:
    vars_file = playbook.parent / f"{playbook.stem}-vars.json"
    vars_file.write_text(json.dumps({"ansible_python_interpreter": sys.executable, **extra_vars}))
    return subprocess.run(
        ["ansible-playbook", "-i", "localhost,", str(playbook), "-e", f"@{vars_file}", *args],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300, check=False)


def _render(tmp_path: Path, **extra) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path / "render"
    play = _playbook(tmp_path, [{"name": "render", "ansible.builtin.include_role": {
        "name": "labhub.platform.portal", "tasks_from": "render"}}])
    result = _run(play, {"labhub_render_dir": str(out), **extra})
    assert result.returncode == 0, result.stdout + result.stderr
    return out / "portal", result


def _objects(directory: Path) -> dict[str, dict]:
    objects = {}
    for path in sorted(directory.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert len(docs) == 1, path
        objects[path.name] = docs[0]
    return objects


def _check_fields(value, type_name: str, where: str) -> None:
    """Every key must be a field of the Kubernetes client model (recursively): catches typos."""
    if type_name.lower().startswith("list["):
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            _check_fields(item, type_name[5:-1], f"{where}[{i}]")
        return
    if type_name.lower().startswith(("dict(", "dict[")):
        assert isinstance(value, dict), where
        inner = type_name[5:-1].split(", ", 1)[1]
        for key, item in value.items():
            _check_fields(item, inner, f"{where}.{key}")
        return
    if type_name in ("str", "int", "bool", "float", "object", "datetime", "date"):
        return
    cls = getattr(k8s_models, type_name)
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    assert isinstance(value, dict), f"{where} must be an object ({type_name})"
    for key, item in value.items():
        assert key in by_json, f"{where}: '{key}' is not a field of {type_name}"
        _check_fields(item, cls.openapi_types[by_json[key]], f"{where}.{key}")


def _all_rules(objects: dict[str, dict]) -> list[tuple[str, dict]]:
    return [(obj["kind"], rule) for obj in objects.values() for rule in obj.get("rules", [])]


@pytest.fixture(scope="module")
def default_render(tmp_path_factory) -> Path:
    """One render with the role's defaults, shared by the tests that only read it."""
    directory, _ignored = _render(tmp_path_factory.mktemp("portal-render"))
    return directory


def test_render_writes_least_privilege_objects(default_render):
    objects = _objects(default_render)
    assert list(objects) == ["01-serviceaccount.yaml", "02-token-secret.yaml", "03-role.yaml",
                             "04-rolebinding.yaml", "05-clusterrole-nodes.yaml",
                             "06-clusterrolebinding-nodes.yaml"]
    for name, obj in objects.items():
        _check_fields(obj, f"V1{obj['kind']}", name)

    sa, secret, role, binding, crole, cbinding = list(objects.values())
    assert sa["kind"] == "ServiceAccount" and sa["metadata"] == {**sa["metadata"], "name": "labhub-portal",
                                                                 "namespace": "jhub"}
    assert sa["automountServiceAccountToken"] is False
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "labhub-portal"}
    assert secret["metadata"]["namespace"] == "jhub"

    # Namespaced Role: pods read + delete, their metrics read, nothing else.
    assert role["kind"] == "Role" and role["metadata"]["namespace"] == "jhub"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"],
                              "verbs": ["get", "list", "watch", "delete"]},
                             {"apiGroups": ["metrics.k8s.io"], "resources": ["pods"], "verbs": ["get", "list"]}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "labhub-portal"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "labhub-portal", "namespace": "jhub"}]

    # Cluster scope: nodes, read-only, nothing else.
    assert crole["kind"] == "ClusterRole" and "namespace" not in crole["metadata"]
    assert crole["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}]
    assert cbinding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                   "name": crole["metadata"]["name"]}
    assert cbinding["subjects"] == binding["subjects"]

    for kind, rule in _all_rules(objects):
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], f"{kind} grants a wildcard in {key}"
        assert not {"create", "update", "patch", "deletecollection", "escalate", "bind",
                    "impersonate"} & set(rule["verbs"]), f"{kind} grants more than read/delete"
        assert "secrets" not in rule["resources"]


def test_render_without_node_access_has_no_cluster_scope_and_drops_stale_files(tmp_path, default_render):
    shutil.copytree(default_render, tmp_path / "render" / "portal")
    assert (tmp_path / "render" / "portal" / "05-clusterrole-nodes.yaml").exists()
    directory, _ignored = _render(tmp_path, portal_kube_node_access=False)
    objects = _objects(directory)
    assert list(objects) == ["01-serviceaccount.yaml", "02-token-secret.yaml", "03-role.yaml",
                             "04-rolebinding.yaml"]
    assert {obj["kind"] for obj in objects.values()} == {"ServiceAccount", "Secret", "Role", "RoleBinding"}


def test_render_follows_namespace_and_account_name(tmp_path):
    directory, _ignored = _render(tmp_path, portal_hub_namespace="hub-prod", portal_kube_service_account="usage")
    objects = _objects(directory)
    for name, obj in objects.items():
        if obj["kind"].startswith("Cluster"):
            assert obj["metadata"]["name"] == "usage-hub-prod-node-reader", name
        else:
            assert obj["metadata"]["namespace"] == "hub-prod", name
    for obj in objects.values():
        for subject in obj.get("subjects", []):
            assert subject == {"kind": "ServiceAccount", "name": "usage", "namespace": "hub-prod"}


def test_render_is_idempotent(tmp_path, default_render):
    shutil.copytree(default_render, tmp_path / "render" / "portal")
    _ignored, second = _render(tmp_path)
    assert "changed=0" in second.stdout, second.stdout


def test_render_refuses_bad_namespace_before_writing(tmp_path):
    out = tmp_path / "render"
    play = _playbook(tmp_path, [{"name": "render", "ansible.builtin.include_role": {
        "name": "labhub.platform.portal", "tasks_from": "render"}}])
    result = _run(play, {"labhub_render_dir": str(out), "portal_hub_namespace": "Bad_NS"})
    assert result.returncode != 0
    row = _row(result.stdout, "portal_hub_namespace")
    assert '"Bad_NS"' in row and "not a Kubernetes name" in row, result.stdout
    assert not out.exists()


def test_kubeconfig_template_loads_in_the_kubernetes_client(tmp_path):
    token = "eyJhbGciOiJSUzI1NiJ9.portal-test-token.signature"
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()
    dest = tmp_path / "portal-kubeconfig"
    play = _playbook(tmp_path, [
        {"name": "load the role's defaults", "ansible.builtin.include_role": {
            "name": "labhub.platform.portal", "tasks_from": "render", "public": True}},
        {"name": "render the kubeconfig", "ansible.builtin.template": {
            "src": str(REPO / "roles/portal/templates/kubeconfig.j2"), "dest": str(dest), "mode": "0600"},
         "vars": {"__portal_kube_server": "https://10.0.0.1:16443\n",
                  "__portal_kube_token": {"resources": [{"data": {
                      "token": base64.b64encode(token.encode()).decode(), "ca.crt": ca}}]}}},
    ])
    result = _run(play, {"labhub_render_dir": str(tmp_path / "render")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert dest.stat().st_mode & 0o777 == 0o600

    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(dest), client_configuration=config)
    assert config.host == "https://10.0.0.1:16443"
    assert list(config.api_key.values()) == [f"Bearer {token}"]
    assert Path(config.ssl_ca_cert).read_bytes() == base64.b64decode(ca)
    loaded = yaml.safe_load(dest.read_text())
    assert loaded["contexts"][0]["context"]["namespace"] == "jhub"
    assert loaded["current-context"] == "labhub-portal"


def _row(output: str, variable: str, host: str = "localhost") -> str:
    """The row of labhub.platform.validate's table for a host and variable (wrapped cells joined)."""
    rows, current = {}, None
    for line in output.splitlines():
        cells = [c.strip() for c in line.split(" | ")]
        if len(cells) < 4:
            current = None
            continue
        if cells[0]:
            current = (cells[0], cells[1])
            rows[current] = cells
        elif current is not None:
            rows[current] = [(a + " " + b).strip() for a, b in zip(rows[current], cells + [""] * 5)]
    cells = rows.get((host, variable))
    return " | ".join(cells) if cells else ""


def _main_in_check_mode(tmp_path, secrets: dict) -> subprocess.CompletedProcess:
    play = _playbook(tmp_path, [{"name": "install", "ansible.builtin.include_role": {
        "name": "labhub.platform.portal"}}])
    # Check mode as a second safety net: the role must stop in its preflight anyway.
    return _run(play, {"portal_wheels_src_dir": str(tmp_path / "wheels"), **secrets},
                "--check")


def test_missing_secrets_are_refused_by_the_argument_spec(tmp_path):
    result = _main_in_check_mode(tmp_path, {"portal_token": GOOD_SECRETS["portal_token"]})
    assert result.returncode != 0
    assert "missing required arguments" in result.stdout
    for name in ("portal_database_password", "portal_cookie_secret"):
        assert name in result.stdout
    # the hub token is not an operator input any more: shared with role jupyterhub, generated once
    assert "portal_hub_api_token" not in result.stdout.split("missing required arguments", 1)[1].splitlines()[0]
    assert GOOD_SECRETS["portal_token"] not in result.stdout + result.stderr


def _portal_env(tmp_path: Path, extra: dict) -> tuple[dict, subprocess.CompletedProcess]:
    """portal.env as the role writes it (defaults + vars + the template), for hub-integration checks."""
    dest = tmp_path / "portal.env"
    play = [{"name": "portal.env", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars_files": [str(REPO / "roles/portal/defaults/main.yml"), str(REPO / "roles/portal/vars/main.yml")],
             "tasks": [{"name": "render portal.env", "ansible.builtin.template": {
                 "src": str(REPO / "roles/portal/templates/portal.env.j2"), "dest": str(dest), "mode": "0600"}}]}]
    path = tmp_path / "env-play.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    secrets = {k: v for k, v in GOOD_SECRETS.items() if k != "portal_hub_api_token"}
    result = _run(path, {**secrets, "__portal_kubeconfig_present": False, **extra})
    assert result.returncode == 0, result.stdout + result.stderr
    env = {}
    for line in dest.read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            env[name] = value.strip("'")
    return env, result


def test_hub_settings_come_from_the_shared_inventory_names(tmp_path):
    """portal_hub_service + the shared names (also read by role jupyterhub) give the portal its hub
    URLs, OAuth client id, redirect base and admin group; the service token is generated once into
    the shared credential file (0600), reused on the next run, and never printed."""
    token_file = tmp_path / "creds" / "jupyterhub" / "portal_api_token"
    shared = {"portal_hub_service": True, "jupyterhub_public_url": "https://hub.example.org/",
              "portal_public_url": "https://portal.example.org", "portal_admin_group": "labhub-billing",
              "portal_hub_service_name": "usage", "portal_hub_api_token_file": str(token_file)}
    env, result = _portal_env(tmp_path, shared)
    token = token_file.read_text().strip()
    assert len(token) == 64 and oct(token_file.stat().st_mode & 0o777) == oct(0o600)
    assert token not in result.stdout + result.stderr
    assert env["PORTAL_HUB_API_TOKEN"] == token
    assert env["PORTAL_HUB_API_URL"] == "https://hub.example.org/hub/api"
    assert env["PORTAL_HUB_PUBLIC_URL"] == "https://hub.example.org/"
    assert env["PORTAL_OAUTH_CLIENT_ID"] == "service-usage"
    assert env["PORTAL_BASE_URL"] == "https://portal.example.org"
    assert env["PORTAL_ADMIN_GROUP"] == "labhub-billing"
    again, _ignored = _portal_env(tmp_path, {**shared, "portal_hub_api_url": "http://10.0.0.9:30080/hub/api"})
    assert again["PORTAL_HUB_API_TOKEN"] == token  # generated once
    assert again["PORTAL_HUB_API_URL"] == "http://10.0.0.9:30080/hub/api"


def test_hub_integration_off_and_vault_token(tmp_path):
    vault_token = "0123456789abcdef0123456789abcdef"
    token_file = tmp_path / "portal_api_token"
    env, _ignored = _portal_env(tmp_path, {"jupyterhub_public_url": "https://hub.example.org",
                                           "portal_hub_api_token": vault_token,
                                           "portal_hub_api_token_file": str(token_file)})
    assert "PORTAL_HUB_API_URL" not in env  # portal_hub_service off: no OAuth, stops delete pods
    assert env["PORTAL_HUB_API_TOKEN"] == vault_token and not token_file.exists()
    assert env["PORTAL_OAUTH_CLIENT_ID"] == "service-labhub-portal"


def test_gpu_idle_settings_reach_the_env_file_and_the_portal_accepts_them(tmp_path):
    """The idle-GPU variables become PORTAL_GPU_IDLE_* (the stop policy off by default), and the
    file the role writes is what the portal's own settings model reads."""
    from ansible_collections.labhub.platform.plugins.module_utils import _portal_settings as ps

    env, _ignored = _portal_env(tmp_path, {})
    assert {k: v for k, v in env.items() if k.startswith("PORTAL_GPU_IDLE_")} == {
        "PORTAL_GPU_IDLE_STOP": "false", "PORTAL_GPU_IDLE_STOP_GRACE": "900", "PORTAL_GPU_IDLE_CHECK_INTERVAL": "60",
        "PORTAL_GPU_IDLE_THRESHOLD": "5", "PORTAL_GPU_IDLE_AFTER": "3600"}
    on = {"portal_prometheus_url": "http://prometheus.example.org:9090", "portal_gpu_idle_stop": True,
          "portal_gpu_idle_stop_grace": 600, "portal_gpu_idle_threshold": 2.5}
    env, _ignored = _portal_env(tmp_path, on)
    assert env["PORTAL_GPU_IDLE_STOP"] == "true" and env["PORTAL_GPU_IDLE_STOP_GRACE"] == "600"
    assert env["PORTAL_GPU_IDLE_THRESHOLD"] == "2.5"
    settings = ps.load_config_module().Settings(_env_file=str(tmp_path / "portal.env"))
    assert settings.gpu_idle_stop is True and settings.gpu_idle_stop_grace == 600
    assert settings.gpu_idle_threshold == 2.5 and settings.prometheus_url == "http://prometheus.example.org:9090"


def test_gpu_idle_stop_without_prometheus_is_refused(tmp_path):
    """The stop policy judges GPUs from Prometheus: turned on without portal_prometheus_url, the role
    stops in its preflight naming the variable, before anything changes."""
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "labhub_portal-0.1.0-py3-none-any.whl").write_bytes(b"")
    result = _main_in_check_mode(tmp_path, {**GOOD_SECRETS, "portal_gpu_idle_stop": True})
    assert result.returncode != 0
    assert "portal_prometheus_url is empty" in _row(result.stdout, "portal_gpu_idle_stop")
    assert "Install PostgreSQL" not in result.stdout


# Each case sets all four secrets to bad values at once: the validation table has a row for each.
@pytest.mark.parametrize("bad", [
    {"portal_token": "changeme", "portal_database_password": "short1",
     "portal_hub_api_token": "aaaaaaaaaaaaaaaaaaaaaaaa", "portal_cookie_secret": "has a space in it 1234567"},
    {"portal_token": "CHANGEME", "portal_database_password": "quote'inside-1234567890",
     "portal_hub_api_token": "", "portal_cookie_secret": "PASSWORD"},
], ids=["defaults-short-repeated-space", "case-quote-empty"])
def test_weak_secrets_are_refused_naming_the_variable_without_printing_it(tmp_path, bad):
    result = _main_in_check_mode(tmp_path, bad)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for name, value in bad.items():
        assert "<secret>" in _row(output, name), name
        if value:
            assert value not in output, f"{name} leaked"
    # Nothing after the preflight ran: no package, user or file task appears.
    assert "Install PostgreSQL" not in output and "Create the service user" not in output


def test_good_secrets_pass_and_one_weak_secret_is_singled_out(tmp_path):
    result = _main_in_check_mode(tmp_path, {**GOOD_SECRETS, "portal_cookie_secret": "portal"})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "well-known default" in _row(output, "portal_cookie_secret")
    for name in ("portal_token", "portal_database_password", "portal_hub_api_token"):
        assert not _row(output, name)
    for secret in GOOD_SECRETS.values():
        assert secret not in output


def test_reused_secret_is_refused(tmp_path):
    result = _main_in_check_mode(tmp_path, {**GOOD_SECRETS,
                                            "portal_cookie_secret": GOOD_SECRETS["portal_token"]})
    assert result.returncode != 0
    assert "is the same value as portal_token" in _row(result.stdout, "portal_cookie_secret")
    assert GOOD_SECRETS["portal_token"] not in result.stdout + result.stderr


def test_missing_wheel_is_refused(tmp_path):
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "labhub_portal-0.0.9-py3-none-any.whl").write_bytes(b"")
    result = _main_in_check_mode(tmp_path, GOOD_SECRETS)
    assert result.returncode != 0
    assert "holds no labhub_portal-0.1.0-*.whl" in _row(result.stdout, "portal_wheels_src_dir")
    assert "Install PostgreSQL" not in result.stdout


def test_hub_service_without_portal_url_is_refused(tmp_path):
    """portal_hub_service makes the portal the hub's OAuth service: without its public URL the
    role stops in its preflight, naming the variable, instead of starting with browser login off."""
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "labhub_portal-0.1.0-py3-none-any.whl").write_bytes(b"")
    result = _main_in_check_mode(tmp_path, {**GOOD_SECRETS, "portal_hub_service": True,
                                            "jupyterhub_public_url": "https://hub.example.org/"})
    assert result.returncode != 0
    assert "portal_hub_service is true" in _row(result.stdout, "portal_public_url")
    assert "Install PostgreSQL" not in result.stdout


def test_argument_spec_errors_before_the_validator_print_no_secret(tmp_path):
    """Role argument validation runs before the role's first task (the validator): its failure
    output (errors and the whole spec) must not carry a secret, whatever type the secret has."""
    canaries = {"portal_token": {"k": "CANARYTOKEN0123456789"}, "portal_database_password": ["CANARYDBPW0123456789"],
                "portal_cookie_secret": "CANARYCOOKIE0123456789", "portal_mysql_url": ["mysql://u:CANARYMYSQL@h/db"],
                "portal_extra_settings": ["CANARYEXTRA"], "portal_bind_port": "abc"}
    result = _main_in_check_mode(tmp_path, canaries)
    assert result.returncode != 0
    assert "Validation of arguments failed" in result.stdout + result.stderr
    assert "CANARY" not in result.stdout + result.stderr
