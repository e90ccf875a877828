"""The jupyterhub role, rendered for real (ansible-playbook playbooks/render.yml, no cluster).

Each good scenario's values.yaml is deep-merged over z2jh 4.4.0's values.yaml (as Helm does) and
validated against the chart's values schema (Draft 7); every image must be an entry of
files/bundle-manifest.yml; every manifest validates against the Kubernetes 1.30 OpenAPI schemas
(kubernetes-validate, strict); no secret value appears in any non-Secret file; the hub
configuration in the ConfigMap passes labhub_hub.validate. Bad inputs fail naming the variable
and write nothing. Installing against a real cluster is NOT tested here (no Kubernetes API).
"""
from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from jupyterhub_render import (REPO, chart_schema_and_values, deep_merge, images_in, run_render,
                               secret_values, write_inventory)

sys.path.insert(0, str(REPO / "files" / "hub"))
from labhub_hub.config import validate as hub_validate  # noqa: E402
from labhub_hub.passwords import hash_password  # noqa: E402

kubernetes_validate = pytest.importorskip("kubernetes_validate")

K8S_VERSION = "1.30.0"
PROFILES = [{"name": "cpu-small", "cpu": 1, "memory": "2Gi", "gpus": 0},
            {"name": "cpu-large", "cpu": "4", "cpu_guarantee": "500m", "memory": "8G", "gpus": 0}]
GPU_PROFILES = PROFILES + [{"name": "gpu-1", "cpu": 8, "memory": "64Gi", "gpus": 1}]
SECRETS = {
    "github": "gh-secret-4f1c2a9e8b7d6c5a",
    "azuread": "az-secret-0b1c2d3e4f5a6b7c",
    "auth0": "a0-secret-9a8b7c6d5e4f3a2b",
    "oidc": "oidc-secret-5e6f7a8b9c0d1e2f",
    "service": "svc-token-00112233445566778899aabbccddeeff",
}
MODE_VARS = {
    "native": {},
    "github": {"jupyterhub_github_client_id": "gh-client",
               "jupyterhub_github_client_secret": SECRETS["github"],
               "jupyterhub_auth_settings": {"github": {"allowed_organizations": ["labhub-org:vision"]}}},
    "azuread": {"jupyterhub_azuread_tenant_id": "11111111-2222-3333-4444-555555555555",
                "jupyterhub_azuread_client_id": "az-client",
                "jupyterhub_azuread_client_secret": SECRETS["azuread"],
                "jupyterhub_auth_settings": {"azuread": {"allowed_tenants": ["11111111-2222-3333-4444-555555555555"]}}},
    "auth0": {"jupyterhub_auth0_domain": "labhub.eu.auth0.com", "jupyterhub_auth0_client_id": "a0-client",
              "jupyterhub_auth0_client_secret": SECRETS["auth0"],
              "jupyterhub_auth_settings": {"auth0": {"allowed_users": ["alice@example.org"]}}},
    "oidc": {"jupyterhub_oidc_issuer_url": "https://sso.example.org/realms/research",
             "jupyterhub_oidc_client_id": "labhub", "jupyterhub_oidc_client_secret": SECRETS["oidc"],
             "jupyterhub_auth_settings": {"oidc": {"allowed_groups": ["labhub-users"], "admin_groups": ["admins"]}}},
    "cookie_sso": {"jupyterhub_cookie_sso_cookie_name": "corp_session",
                   "jupyterhub_cookie_sso_whoami_url": "http://sso.corp.internal/whoami",
                   "jupyterhub_cookie_sso_login_url": "https://sso.corp.example/login?next={next}"},
    "local_groups": {},  # filled in by _local_groups() (hash made with the package's own code)
    "dummy": {"labhub_test_inventory": True},
}


def _local_groups():
    return {"jupyterhub_local_groups": {
        "course-a": {"members": ["s1", "s2"], "password_hash": hash_password("course-a-password-123")},
        "staff": {"members": ["t1"], "password_hash": hash_password("staff-password-456"), "admin": True}}}


def _mode(*modes, **extra):
    out = {"jupyterhub_auth_modes": list(modes), "jupyterhub_profiles": PROFILES, "gpu_operator_enabled": False}
    settings = {}
    for mode in modes:
        mv = _local_groups() if mode == "local_groups" else MODE_VARS.get(mode, {})
        for key, value in mv.items():
            if key == "jupyterhub_auth_settings":
                settings.update(value)
            else:
                out[key] = value
    if settings:
        out["jupyterhub_auth_settings"] = settings
    out.update(extra)
    return out


def _tls_files(root: Path) -> tuple[str, str]:
    cert, key = root / "tls.crt", root / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=hub.example.org", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return str(cert), str(key)


GOOD = ["mode_native", "mode_github", "mode_azuread", "mode_auth0", "mode_oidc", "mode_cookie_sso",
        "mode_local_groups", "mode_dummy", "multi", "storage_hostpath", "storage_nfs", "storage_none",
        "ingress_tls", "nodeport_tls", "nodeport_letsencrypt", "gpu_on", "no_rendered_secrets", "hub_start",
        "portal_service", "grafana_groups", "grafana_login_off"]
# Bad inputs fail in the role's validation (labhub.platform.validate, check hub): each expected
# text is "VARIABLE: PROBLEM" of one row of the table, the variable as the inventory writes it.
BAD = {
    "bad_missing_secret": (_mode("github", jupyterhub_github_client_secret=""),
                           "jupyterhub_github_client_secret: is required by login mode 'github'"),
    "bad_unknown_mode": (_mode("native", "ldap"), 'jupyterhub_auth_modes: unknown login mode "ldap"'),
    "bad_dummy_outside_tests": (_mode("dummy", labhub_test_inventory=False),
                                "jupyterhub_auth_modes: login mode 'dummy' accepts any password and is for tests only"),
    "bad_gpu_off": (_mode("native", jupyterhub_profiles=GPU_PROFILES),
                    "jupyterhub_profiles[gpu-1].gpus: requests 1 GPU(s) but GPU support is off"),
    "bad_cpu": (_mode("native", jupyterhub_profiles=[{"name": "x", "cpu": "2 cores", "memory": "1Gi"}]),
                "jupyterhub_profiles[x].cpu: invalid CPU quantity"),
    "bad_memory": (_mode("native", jupyterhub_profiles=[{"name": "x", "cpu": 1, "memory": "8 GB"}]),
                   "jupyterhub_profiles[x].memory: invalid memory quantity"),
    "bad_team": (_mode("native", jupyterhub_teams={"vision": ["cpu-small", "gpu-9"]}),
                 "jupyterhub_teams.vision: team 'vision' is mapped to unknown profile 'gpu-9'"),
    "bad_image": (_mode("native", jupyterhub_singleuser_image="docker.io/jupyter/base-notebook:latest"),
                  "jupyterhub_singleuser_image: image docker.io/jupyter/base-notebook:latest is not in the bundle manifest"),
    "bad_nfs": (_mode("native", jupyterhub_storage_kind="nfs"), "jupyterhub_storage_nfs_server: is required"),
    "bad_inline_secret": (_mode("native", jupyterhub_auth_settings={"github": {"client_secret": "x"}}),
                          "jupyterhub_auth_settings.github.client_secret: is set by the role"),
    "bad_portal_without_url": (_mode("native", portal_hub_service=True),
                               "portal_public_url: the portal URL as browsers see it is required"),
    "bad_portal_without_hub_url": (_mode("native", portal_hub_service=True, portal_public_url="https://portal.example.org"),
                                   "jupyterhub_public_url: is required when portal_hub_service is true"),
    "bad_portal_short_token": (_mode("native", portal_hub_service=True, portal_public_url="https://portal.example.org",
                                     jupyterhub_public_url="https://hub.example.org", portal_hub_api_token="too-short-token"),
                               "portal_hub_api_token: is shorter than 32 characters"),
    "bad_admin_capitals": (_mode("native", jupyterhub_admin_users=["Alice"]),
                           "jupyterhub_admin_users[0]: has capitals: JupyterHub lower-cases user names"),
    "bad_github_unrestricted": (_mode("github", jupyterhub_auth_settings={}),
                                "jupyterhub_auth_settings.github: login mode 'github' has no allowed users"),
}
# The portal as a hub service (labhub_portal_*, shared with roles/portal); the contract file is
# what portal/tests/integration/test_hub_oauth_real.py registers with a real JupyterHub.
PORTAL_CONTRACT = REPO / "portal" / "tests" / "integration" / "hub_service_values.json"
PORTAL_VARS = {"portal_hub_service": True, "portal_public_url": "https://portal.example.org/",
               "portal_admin_group": "labhub-billing", "jupyterhub_public_url": "https://hub.example.org"}


@pytest.fixture(scope="session")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("jupyterhub-render")
    cert, key = _tls_files(root)
    scenarios = {
        "mode_native": _mode("native"),
        "mode_github": _mode("github"),
        "mode_azuread": _mode("azuread"),
        "mode_auth0": _mode("auth0"),
        "mode_oidc": _mode("oidc"),
        "mode_cookie_sso": _mode("cookie_sso"),
        "mode_local_groups": _mode("local_groups"),
        "mode_dummy": _mode("dummy"),
        "multi": _mode("native", "github", "oidc", "cookie_sso", "local_groups",
                       jupyterhub_teams={"labhub-org:vision": ["cpu-large"], "course-a": ["cpu-small"]},
                       jupyterhub_default_profiles=["cpu-small"],
                       jupyterhub_services={"labhub-portal": {"api_token": SECRETS["service"], "url": "http://10.0.0.5:8780",
                                                              "oauth_redirect_uri": "https://hub.example.org/portal/oauth_callback",
                                                              "roles": ["list:users", "admin:servers"]}}),
        "storage_hostpath": _mode("native", jupyterhub_storage_kind="hostpath", jupyterhub_storage_hostpath_root="/srv/lab/home",
                                  jupyterhub_shared_volumes=[{"name": "datasets", "kind": "hostpath", "path": "/srv/lab/datasets"},
                                                             {"name": "models", "kind": "pvc", "claim_name": "models", "read_only": False}]),
        "storage_nfs": _mode("native", jupyterhub_storage_kind="nfs", jupyterhub_storage_nfs_server="10.1.2.3",
                             jupyterhub_storage_nfs_path="/export/home",
                             jupyterhub_shared_volumes=[{"name": "datasets", "kind": "nfs", "server": "10.1.2.3", "path": "/export/data"}],
                             jupyterhub_singleuser_extra_egress=[{"cidr": "10.1.2.3/32", "ports": [{"port": 2049}]}],
                             jupyterhub_hub_extra_egress=[{"cidr": "10.9.0.0/16", "ports": [{"port": 443, "protocol": "TCP"}]}]),
        "storage_none": _mode("native", jupyterhub_storage_kind="none"),
        "ingress_tls": _mode("native", jupyterhub_expose="ingress", jupyterhub_hostname="hub.example.org",
                             jupyterhub_tls_mode="files", jupyterhub_tls_cert_file=cert, jupyterhub_tls_key_file=key),
        "nodeport_tls": _mode("native", jupyterhub_hostname="hub.example.org", jupyterhub_tls_mode="files",
                              jupyterhub_tls_cert_file=cert, jupyterhub_tls_key_file=key),
        "nodeport_letsencrypt": _mode("native", jupyterhub_hostname="hub.example.org", jupyterhub_tls_mode="letsencrypt",
                                      jupyterhub_letsencrypt_email="ops@example.org",
                                      monitoring_grafana_tls_cert_file=cert, monitoring_grafana_tls_key_file=key),
        "gpu_on": _mode("oidc", gpu_operator_enabled=True, jupyterhub_profiles=GPU_PROFILES,
                        jupyterhub_teams={"labhub-users": ["cpu-small", "gpu-1"]},
                        jupyterhub_dynamic_profile={"enabled": True, "max_gpu": 2}),
        "no_rendered_secrets": _mode("github", jupyterhub_render_secrets=False),
        # started as a real JupyterHub by test_rendered_files_start_a_real_hub
        "hub_start": _mode("native", "github", "cookie_sso", "local_groups",
                           jupyterhub_announcement="Maintenance on Monday", jupyterhub_public_url="https://hub.example.org"),
        # Grafana's sign-in limited to a hub group (started as a real hub too); and switched off
        "grafana_groups": _mode("local_groups", jupyterhub_local_groups=dict(
            _local_groups()["jupyterhub_local_groups"],
            **{"course-b": {"members": ["s3"], "password_hash": hash_password("course-b-password-789")}}),
            jupyterhub_expose="ingress", jupyterhub_hostname="hub.example.org",
            monitoring_grafana_viewers="groups", monitoring_grafana_viewer_groups=["course-a"]),
        "grafana_login_off": _mode("native", monitoring_grafana_hub_login=False),
        "portal_service": _mode("native", **PORTAL_VARS,
                                portal_hub_api_token_file=str(root / "shared-credentials" / "portal_api_token")),
    }
    for name, (variables, _message) in BAD.items():
        scenarios[name] = variables
    assert set(GOOD) | set(BAD) == set(scenarios)
    inventory = write_inventory(root, scenarios)
    result = run_render(inventory)
    return {"root": root, "result": result, "cert": cert, "key": key}


def _load(root: Path, name: str):
    out = root / "out" / name / "jupyterhub"
    values = yaml.safe_load((out / "values.yaml").read_text())
    manifests = {p.name: yaml.safe_load(p.read_text()) for p in sorted((out / "manifests").glob("*.yaml"))}
    return out, values, manifests


@pytest.mark.slow
@pytest.mark.parametrize("name", GOOD)
def test_scenario_renders_and_validates(rendered, shared_reference, name):
    res = rendered["result"][name]
    assert not res["failed"], res["msgs"]
    out, values, manifests = _load(rendered["root"], name)

    # values: merged over the chart defaults exactly as Helm does, then the chart's schema
    schema, chart_values = chart_schema_and_values(shared_reference)
    merged = deep_merge(chart_values, values)
    jsonschema.Draft7Validator(schema).validate(merged)
    assert merged["singleuser"]["profileList"] == []
    # the chart's default authenticator (dummy) is removed; labhub_hub.configure() sets Labhub's
    assert "authenticator_class" not in merged["hub"]["config"]["JupyterHub"]
    assert "10-labhub" in merged["hub"]["extraConfig"]

    # every image (chart defaults included) and every hub-config image is in the bundle manifest
    bundle = yaml.safe_load((REPO / "files" / "bundle-manifest.yml").read_text())
    pinned = {i["ref"] for i in bundle["images"]}
    hub_cfg = yaml.safe_load(manifests["40-configmap-hub.yaml"]["data"]["config.yaml"])
    refs = images_in(merged) + [("spawn.default_image", hub_cfg["spawn"]["default_image"])]
    refs += [(f"spawn.profiles[{p['slug']}]", p["image"]) for p in hub_cfg["spawn"]["profiles"] if "image" in p]
    for m in manifests.values():
        refs += images_in(m)
    unpinned = [(p, r) for p, r in refs if r not in pinned]
    assert not unpinned, unpinned
    assert len(refs) >= 9

    # Kubernetes OpenAPI (1.30, strict) for every manifest
    for file, m in manifests.items():
        kubernetes_validate.validate(m, K8S_VERSION, strict=True)

    # the hub configuration is valid for the hub package and carries secrets only by reference
    hub_validate(hub_cfg)
    assert hub_cfg["auth"]["modes"] == rendered_modes(name)

    # no secret value anywhere but in Secret manifests; modes 0600 / 0644
    secret_manifests = [m for m in manifests.values() if m["kind"] == "Secret"]
    secrets = [s for s in secret_values(secret_manifests) if len(s) >= 8]
    for path in out.rglob("*"):
        if path.is_dir():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        doc = yaml.safe_load(path.read_text()) if path.suffix == ".yaml" else None
        if isinstance(doc, dict) and doc.get("kind") == "Secret":
            assert mode == 0o600, path
            continue
        assert mode == 0o644, path
        text = path.read_text()
        for s in secrets + list(SECRETS.values()):
            assert s not in text, f"secret value leaked into {path}"
    # every hub.extraEnv secretKeyRef points at a key of the rendered hub Secret
    hub_secret = next((m for m in secret_manifests if m["metadata"]["name"].endswith("-hub-secrets")), None)
    for env in merged["hub"]["extraEnv"].values():
        if isinstance(env, dict) and "valueFrom" in env:
            ref = env["valueFrom"]["secretKeyRef"]
            assert ref["name"] == merged["hub"]["existingSecret"]
            if hub_secret is not None:
                assert ref["key"] in hub_secret["data"], ref
    if hub_secret is not None:
        assert {"hub.config.JupyterHub.cookie_secret", "hub.config.CryptKeeper.keys"} <= set(hub_secret["data"])


def rendered_modes(name):
    return {"multi": ["native", "github", "oidc", "cookie_sso", "local_groups"],
            "gpu_on": ["oidc"], "no_rendered_secrets": ["github"], "grafana_groups": ["local_groups"],
            "hub_start": ["native", "github", "cookie_sso", "local_groups"]}.get(
                name, [name.removeprefix("mode_")] if name.startswith("mode_") else ["native"])


@pytest.mark.slow
def test_multi_mode_wires_every_secret(rendered):
    _ignored, values, manifests = _load(rendered["root"], "multi")
    env = values["hub"]["extraEnv"]
    assert env["LABHUB_GITHUB_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "github-client-secret"
    assert env["LABHUB_OIDC_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "oidc-client-secret"
    assert env["LABHUB_LOCAL_GROUP_0_PASSWORD_HASH"]["valueFrom"]["secretKeyRef"]["key"] == "local-group.course-a.password-hash"
    cfg = yaml.safe_load(manifests["40-configmap-hub.yaml"]["data"]["config.yaml"])
    assert cfg["auth"]["github"]["client_secret"] == {"env": "LABHUB_GITHUB_CLIENT_SECRET"}
    assert cfg["auth"]["local_groups"]["groups"]["staff"] == {
        "members": ["t1"], "admin": True, "password_hash": {"env": "LABHUB_LOCAL_GROUP_1_PASSWORD_HASH"}}
    assert cfg["spawn"]["teams"] == {"labhub-org:vision": ["cpu-large"], "course-a": ["cpu-small"]}
    secret = manifests["30-secret-hub.yaml"]
    decoded = dict(zip(secret["data"], secret_values([secret])))
    assert decoded["github-client-secret"] == SECRETS["github"]
    assert decoded["hub.services.labhub-portal.apiToken"] == SECRETS["service"]
    assert decoded["local-group.course-a.password-hash"].startswith("pbkdf2_sha256$")
    svc = values["hub"]["services"]["labhub-portal"]
    assert "apiToken" not in svc and "api_token" not in svc
    assert values["hub"]["loadRoles"]["labhub-portal-service"]["scopes"] == ["list:users", "admin:servers"]


@pytest.mark.slow
def test_portal_is_registered_as_a_hub_service_with_a_generated_shared_token(rendered, tmp_path):
    """portal_hub_service: hub.services / hub.loadRoles equal the contract the real-hub test uses,
    the token is generated once into the shared credential file (0600, directory 0700), reaches
    the hub only through the Secret, and role portal writes the same token into portal.env."""
    import json
    from jupyterhub_render import ansible_env
    _ignored, values, manifests = _load(rendered["root"], "portal_service")
    contract = json.loads(PORTAL_CONTRACT.read_text().replace("@PORTAL_PUBLIC_URL@", "https://portal.example.org")
                          .replace("@PORTAL_ADMIN_GROUP@", "labhub-billing"))
    # besides role monitoring's (on by default): Prometheus' metrics reader (read:metrics only) and
    # Grafana's OAuth client (on Grafana's NodePort of the hub's host; every user may sign in)
    metrics = {"labhub-prometheus": {"name": "labhub-prometheus"}}
    metrics_role = {"labhub-prometheus-service": {"services": ["labhub-prometheus"], "scopes": ["read:metrics"]}}
    grafana = {"labhub-grafana": {"name": "labhub-grafana", "oauth_client_id": "service-labhub-grafana",
                                  "oauth_redirect_uri": "http://hub.example.org:30300/login/generic_oauth",
                                  "oauth_no_confirm": True, "oauth_client_allowed_scopes": ["read:users!user"]}}
    grafana_role = {"user": {"scopes": ["self", "access:services!service=labhub-grafana"]}}
    assert values["hub"]["services"] == {**contract["services"], **metrics, **grafana}
    assert values["hub"]["loadRoles"] == {**contract["loadRoles"], **metrics_role, **grafana_role}
    assert values["hub"]["networkPolicy"]["ingress"] == [{
        "ports": [{"port": "http"}],
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                  "podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}} for name in ("prometheus", "grafana")]}]
    token_file = rendered["root"] / "shared-credentials" / "portal_api_token"
    token = token_file.read_text().strip()
    assert len(token) == 64 and int(token, 16) >= 0
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    secret = manifests["30-secret-hub.yaml"]
    secret_data = dict(zip(secret["data"], secret_values([secret])))
    assert secret_data["hub.services.labhub-portal.apiToken"] == token
    # the metrics token: generated once into role monitoring's credential file, which Prometheus reads
    metrics_files = list((rendered["root"] / "inventory").rglob(".credentials/monitoring/hub_metrics_token"))
    assert len(metrics_files) == 1 and stat.S_IMODE(metrics_files[0].stat().st_mode) == 0o600
    assert secret_data["hub.services.labhub-prometheus.apiToken"] == metrics_files[0].read_text().strip()
    out = rendered["root"] / "out" / "portal_service" / "jupyterhub"
    import base64
    encoded = base64.b64encode(token.encode()).decode()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert [p.name for p in files if token in p.read_text()] == []  # values, ConfigMap, ...: never in plain
    assert [p.name for p in files if encoded in p.read_text()] == ["30-secret-hub.yaml"]
    # Grafana's client secret: generated once into role monitoring's credential file too
    grafana_files = list((rendered["root"] / "inventory").rglob(".credentials/monitoring/grafana_oauth_client_secret"))
    assert len(grafana_files) == 1 and stat.S_IMODE(grafana_files[0].stat().st_mode) == 0o600
    assert secret_data["hub.services.labhub-grafana.apiToken"] == grafana_files[0].read_text().strip()
    # the portal scenario off: role monitoring's two services only (no hostname: the node's name)
    _ignored, plain, _ignored2 = _load(rendered["root"], "mode_native")
    assert plain["hub"]["services"] == {**metrics, "labhub-grafana": dict(
        grafana["labhub-grafana"], oauth_redirect_uri="http://mode_native:30300/login/generic_oauth")}
    assert plain["hub"]["loadRoles"] == {**metrics_role, **grafana_role}
    # Grafana's sign-in off: no client, no role, Prometheus alone through the NetworkPolicy
    _ignored, off, _ignored2 = _load(rendered["root"], "grafana_login_off")
    assert off["hub"]["services"] == metrics and off["hub"]["loadRoles"] == metrics_role
    assert [p["podSelector"] for p in off["hub"]["networkPolicy"]["ingress"][0]["from"]] == [
        {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}]

    # role portal, same inventory and host: portal.env carries the same token and matching settings
    env_file = tmp_path / "portal.env"
    play = tmp_path / "portal-env.yml"
    # The role's defaults at the precedence of inventory group vars of `all`, below the scenario's
    # host_vars, as role defaults are below the inventory (the defaults are the inventory
    # variables themselves: vars_files would override the host's portal_hub_api_token_file).
    defaults = tmp_path / "portal-defaults.yml"
    defaults.write_text(yaml.safe_dump({"all": {"vars": yaml.safe_load(
        (REPO / "roles/portal/defaults/main.yml").read_text())}}))
    play.write_text(yaml.safe_dump([{
        "name": "portal.env of the portal_service scenario", "hosts": "portal_service", "gather_facts": False,
        "vars_files": [str(REPO / "roles/portal/vars/main.yml")],
        "vars": {"portal_database_password": "Zq8rT2vLx9WcN4bKm7Hs", "portal_token": "6f1c9e2ab7d34f08a1c5e9b2d7f3a6c4",
                 "portal_cookie_secret": "e7a2c5f9b1d84e3a96c0f2b7d5a8e1c3", "__portal_kubeconfig_present": False},
        "tasks": [{"name": "render portal.env", "ansible.builtin.template": {
            "src": str(REPO / "roles/portal/templates/portal.env.j2"), "dest": str(env_file), "mode": "0600"}}]}]))
    proc = subprocess.run(["ansible-playbook", "-i", str(defaults), "-i", str(rendered["root"] / "inventory"), str(play)],
                          cwd=REPO, env=dict(ansible_env(), ANSIBLE_STDOUT_CALLBACK="default"), capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert token not in proc.stdout + proc.stderr
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#"))
    assert env["PORTAL_HUB_API_TOKEN"] == f"'{token}'"
    assert env["PORTAL_OAUTH_CLIENT_ID"] == "'" + contract["services"]["labhub-portal"]["oauth_client_id"] + "'"
    assert env["PORTAL_BASE_URL"].strip("'").rstrip("/") + "/oauth_callback" == \
        contract["services"]["labhub-portal"]["oauth_redirect_uri"]
    assert env["PORTAL_HUB_API_URL"] == "'https://hub.example.org/hub/api'"
    assert env["PORTAL_HUB_PUBLIC_URL"] == "'https://hub.example.org'"
    assert env["PORTAL_ADMIN_GROUP"] == "'labhub-billing'"


@pytest.mark.slow
def test_storage_kinds(rendered):
    _ignored, v, _ignored = _load(rendered["root"], "storage_hostpath")
    st = v["singleuser"]["storage"]
    assert st["type"] == "none"
    assert st["extraVolumes"][0] == {"name": "labhub-home", "hostPath": {"path": "/srv/lab/home", "type": "DirectoryOrCreate"}}
    assert st["extraVolumeMounts"][0] == {"name": "labhub-home", "mountPath": "/home/jovyan/work", "subPath": "{username}"}
    assert {"name": "labhub-shared-datasets", "mountPath": "/home/jovyan/shared/datasets", "readOnly": True} in st["extraVolumeMounts"]
    assert {"name": "labhub-shared-models", "persistentVolumeClaim": {"claimName": "models", "readOnly": False}} in st["extraVolumes"]
    init = v["singleuser"]["initContainers"][0]
    assert init["volumeMounts"] == [{"name": "labhub-home", "mountPath": "/labhub-home", "subPath": "{username}"}]
    assert "chown 1000:100 /labhub-home" in init["command"][2]

    _ignored, v, m = _load(rendered["root"], "storage_nfs")
    assert v["singleuser"]["storage"]["extraVolumes"][0]["nfs"] == {"server": "10.1.2.3", "path": "/export/home"}
    assert m["20-networkpolicy-singleuser-egress.yaml"]["spec"]["egress"] == [
        {"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}], "ports": [{"port": 2049, "protocol": "TCP"}]}]
    assert v["hub"]["networkPolicy"]["egress"][0]["to"] == [{"ipBlock": {"cidr": "10.9.0.0/16"}}]

    _ignored, v, _ignored = _load(rendered["root"], "mode_native")  # default: MicroK8s hostpath-storage PVCs
    st = v["singleuser"]["storage"]
    assert st["type"] == "dynamic" and st["dynamic"]["storageClass"] == "microk8s-hostpath"
    assert st["homeMountPath"] == "/home/jovyan/work"
    assert v["singleuser"]["initContainers"][0]["volumeMounts"][0]["name"] == "volume-{user_server}"

    _ignored, v, _ignored = _load(rendered["root"], "storage_none")
    assert v["singleuser"]["storage"]["type"] == "none" and "initContainers" not in v["singleuser"]


@pytest.mark.slow
def test_exposure_and_tls(rendered):
    _ignored, v, m = _load(rendered["root"], "ingress_tls")
    assert v["ingress"]["enabled"] and v["ingress"]["hosts"] == ["hub.example.org"]
    assert v["ingress"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert v["ingress"]["tls"] == [{"hosts": ["hub.example.org"], "secretName": "labhub-hub-tls"}]
    assert v["proxy"]["service"]["type"] == "ClusterIP"
    tls = m["31-secret-tls.yaml"]
    assert tls["type"] == "kubernetes.io/tls"
    assert secret_values([tls])[1] == Path(rendered["key"]).read_text()

    _ignored, v, m = _load(rendered["root"], "nodeport_tls")
    assert v["proxy"]["service"] == {"type": "NodePort", "nodePorts": {"http": 30080, "https": 30443}}
    assert v["proxy"]["https"] == {"enabled": True, "hosts": ["hub.example.org"], "type": "secret",
                                   "secret": {"name": "labhub-hub-tls"}}
    assert "ingress" not in v

    _ignored, v, m = _load(rendered["root"], "nodeport_letsencrypt")
    assert v["proxy"]["https"]["type"] == "letsencrypt" and "31-secret-tls.yaml" not in m

    _ignored, v, m = _load(rendered["root"], "mode_native")
    assert "https" not in v["proxy"] and "31-secret-tls.yaml" not in m


@pytest.mark.slow
def test_gpu_on_and_off(rendered):
    _ignored, _ignored, m = _load(rendered["root"], "gpu_on")
    cfg = yaml.safe_load(m["40-configmap-hub.yaml"]["data"]["config.yaml"])
    assert cfg["spawn"]["gpu"]["enabled"] is True
    assert [p["gpu"] for p in cfg["spawn"]["profiles"]] == [0, 0, 1]
    assert m["51-clusterrolebinding-nodes.yaml"]["subjects"][0]["name"] == "hub"
    _ignored, _ignored, m = _load(rendered["root"], "mode_native")
    cfg = yaml.safe_load(m["40-configmap-hub.yaml"]["data"]["config.yaml"])
    assert cfg["spawn"]["gpu"]["enabled"] is False and "50-clusterrole-nodes.yaml" not in m


@pytest.mark.slow
def test_secrets_left_out_on_request(rendered):
    out, _ignored, m = _load(rendered["root"], "no_rendered_secrets")
    assert "30-secret-hub.yaml" not in m
    note = (out / "manifests" / "SECRETS-OMITTED.txt").read_text()
    assert "labhub-hub-secrets" in note and "github-client-secret" in note
    assert SECRETS["github"] not in note


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_fails_naming_the_variable(rendered, name):
    res = rendered["result"][name]
    assert res["failed"], f"{name} should have failed"
    text = "\n".join(res["msgs"])
    assert BAD[name][1] in text, text
    assert not (rendered["root"] / "out" / name).exists(), "a failing render must write nothing"
    for s in SECRETS.values():
        assert s not in text


@pytest.mark.slow
@pytest.mark.parametrize("inventory", ["local", "example"])
def test_shipped_inventories_render(tmp_path, shared_reference, inventory):
    out = tmp_path / "render"
    res = run_render(REPO / "inventories" / inventory, "-e", f"labhub_render_dir={out}",
                     "-e", f"jupyterhub_credentials_dir={tmp_path / 'credentials'}", hosts=None)
    failed = {h: r for h, r in res.items() if not h.startswith("_") and r["failed"]}
    assert not failed, failed
    values = yaml.safe_load((out / "jupyterhub" / "values.yaml").read_text())
    schema, chart_values = chart_schema_and_values(shared_reference)
    jsonschema.Draft7Validator(schema).validate(deep_merge(chart_values, values))
    for p in (out / "jupyterhub" / "manifests").glob("*.yaml"):
        kubernetes_validate.validate(yaml.safe_load(p.read_text()), K8S_VERSION, strict=True)
    if inventory == "local":
        # a second render in check mode must predict no change (idempotent, check mode exact)
        again = run_render(REPO / "inventories" / inventory, "--check", "-e", f"labhub_render_dir={out}",
                           "-e", f"jupyterhub_credentials_dir={tmp_path / 'credentials'}", hosts=None)
        assert {h: r["changed"] for h, r in again.items() if not h.startswith("_")} == {"localhost": 0}


@pytest.mark.slow
def test_generated_credentials_do_not_become_inventory(tmp_path):
    """The default credentials dir lives inside the inventory directory, so it must be one that
    Ansible skips when `-i <directory>` parses every file there (hidden: `.credentials`)."""
    import shutil
    from jupyterhub_render import ansible_env
    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "inventories" / "local", inventory)

    def hosts():
        proc = subprocess.run(["ansible-inventory", "-i", str(inventory), "--list"], cwd=REPO, env=ansible_env(),
                              capture_output=True, text=True, timeout=300, check=True)
        return sorted(yaml.safe_load(proc.stdout)["_meta"]["hostvars"])

    before = hosts()
    res = run_render(inventory, "-e", f"labhub_render_dir={tmp_path / 'out'}", hosts=None)
    assert not [h for h, r in res.items() if not h.startswith("_") and r["failed"]], res
    secret = inventory / ".credentials" / "jupyterhub" / "cookie_secret"
    assert secret.is_file() and stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert hosts() == before


def _uninstall(inventory: Path, *extra: str) -> subprocess.CompletedProcess:
    from jupyterhub_render import ansible_env
    return subprocess.run(["ansible-playbook", str(REPO / "playbooks" / "uninstall.yml"), "-i", str(inventory), *extra],
                          cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_uninstall_plan_keeps_user_data_unless_purged(tmp_path):
    """playbooks/uninstall.yml in plan (render) form: no cluster here, so the real removal is
    not executed; the plan it would carry out is checked instead."""
    inv = write_inventory(tmp_path, {"cp1": {"jupyterhub_storage_kind": "hostpath",
                                             "jupyterhub_storage_hostpath_root": "/srv/lab/home",
                                             "jupyterhub_namespace": "hubns"}})
    plans = {}
    for purge in (False, True):
        out = tmp_path / f"plan-{purge}"
        proc = _uninstall(inv, "-e", f"labhub_render_dir={out}", "-e", f'{{"labhub_purge": {str(purge).lower()}}}')
        assert proc.returncode == 0, proc.stdout[-3000:]
        plans[purge] = yaml.safe_load((out / "uninstall-plan.yaml").read_text())
    keep, purge = plans[False], plans[True]
    for plan in (keep, purge):
        assert plan["helm_release"] == {"name": "labhub", "namespace": "hubns"}
        objects = {(o["kind"], o["name"]) for o in plan["kubernetes_objects"]}
        assert {("ConfigMap", "labhub-hub-extensions"), ("Secret", "labhub-hub-secrets"),
                ("ServiceAccount", "labhub-portal"), ("ClusterRole", "labhub-hub-nodes-hubns")} <= objects
        assert ("Namespace", "hubns") not in objects and not any(o["kind"] == "PersistentVolumeClaim" for o in plan["kubernetes_objects"])
        assert "/opt/labhub/portal" in plan["portal_files"] and plan["portal_service"] == "labhub-portal"
    kinds = {"namespace", "hostpath", "database"}
    assert keep["user_data_deleted"] == [] and {d["kind"] for d in keep["user_data_kept"]} == kinds
    assert purge["user_data_kept"] == [] and {d["kind"] for d in purge["user_data_deleted"]} == kinds
    assert any("/srv/lab/home" in d["what"] for d in purge["user_data_deleted"])


@pytest.mark.slow
def test_uninstall_plan_names_every_hub_object_the_role_applies(rendered):
    """The uninstall plan's hub objects (plugins/module_utils/_uninstall.py) are exactly what the
    jupyterhub role applies in any of the rendered scenarios, but the Namespace (purge only)."""
    from ansible_collections.labhub.platform.plugins.module_utils import _uninstall

    applied = set()
    for name in GOOD:
        _out, _values, manifests = _load(rendered["root"], name)
        for obj in manifests.values():
            meta = obj["metadata"]
            applied.add((obj["kind"], meta["name"], meta.get("namespace"), obj["apiVersion"]))
    namespaces = {n for kind, n, _ns, _api in applied if kind == "Namespace"}
    assert len(namespaces) == 1, namespaces
    planned = {(o["kind"], o["name"], o.get("namespace"), o.get("api_version", "v1"))
               for o in _uninstall.hub_objects(namespaces.pop())}
    assert {a for a in applied if a[0] != "Namespace"} == planned


@pytest.mark.slow
def test_uninstall_refuses_a_string_purge_flag(tmp_path, monkeypatch):
    import json
    report = tmp_path / "report.json"
    monkeypatch.setenv("LABHUB_VALIDATE_REPORT", str(report))
    inv = write_inventory(tmp_path, {"cp1": {}})
    proc = _uninstall(inv, "-e", f"labhub_render_dir={tmp_path / 'plan'}", "-e", "labhub_purge=yes")
    assert proc.returncode != 0
    assert "Labhub validation (uninstall): " in proc.stdout, proc.stdout[-3000:]
    rows = json.loads(report.read_text())
    assert [(r["variable"], r["value"], r["problem"]) for r in rows] == [
        ("labhub_purge", '"yes"', "is a string, not a boolean")], rows
    assert not (tmp_path / "plan").exists()


HUB_VENV = REPO / "files" / "hub" / ".venv" / "bin"
CHP = REPO / "files" / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
POD_DIR = "/usr/local/etc/jupyterhub/labhub"

# What z2jh's own jupyterhub_config.py does with the rendered values, for the parts this test
# needs (an emulation, labelled as such: the chart's file is not in this repository). After it,
# the rendered hub.extraConfig stub runs unchanged except for the mount path.
HUB_CONFIG = """
import os
c = get_config()  # noqa: F821
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.pid_file = {pid!r}
c.JupyterHub.db_url = "sqlite:///{db}"
# z2jh: hub.existingSecret key hub.config.JupyterHub.cookie_secret wins over the chart's Secret
c.JupyterHub.cookie_secret = bytes.fromhex({cookie!r})
# z2jh: hub.config.JupyterHub.* and hub.templateVars
for key, value in {hub_config!r}.items():
    setattr(c.JupyterHub, key, value)
c.JupyterHub.template_vars = {template_vars!r}
# z2jh (files/hub/jupyterhub_config.py): hub.services -> c.JupyterHub.services, each api_token from
# the Secret's hub.services.<key>.apiToken; hub.loadRoles -> c.JupyterHub.load_roles
secret = {secret!r}
c.JupyterHub.services = []
for key, service in {services!r}.items():
    service.setdefault("name", key)
    service.pop("apiToken", None)
    service["api_token"] = secret.get(f"hub.services.{{key}}.apiToken")
    c.JupyterHub.services.append(service)
c.JupyterHub.load_roles = []
for key, role in {load_roles!r}.items():
    role.setdefault("name", key)
    c.JupyterHub.load_roles.append(role)
# ---- hub.extraConfig (rendered) ----
{extra_config}
"""


def _free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RealHub:
    """A rendered scenario started as a real JupyterHub 5.5 (files/hub/.venv) behind a real
    configurable-http-proxy: the ConfigMap's files where the kubelet would put them, the Secret's
    values in the environment hub.extraEnv names, the services and roles as z2jh maps them."""

    def __init__(self, root: Path, name: str, tmp_path: Path):
        import os

        if not (HUB_VENV / "jupyterhub").exists() or not CHP.exists():
            pytest.fail("files/hub/.venv or configurable-http-proxy missing: `make hub-env` sets them up")
        _ignored, self.values, self.manifests = _load(root, name)
        values, manifests = self.values, self.manifests
        self.tmp = tmp_path
        pod = tmp_path / "labhub"
        cm = manifests["40-configmap-hub.yaml"]
        volume = values["hub"]["extraVolumes"][0]
        assert volume["configMap"]["name"] == cm["metadata"]["name"]
        assert values["hub"]["extraVolumeMounts"][0]["mountPath"] == POD_DIR
        for item in volume["configMap"]["items"]:  # what the kubelet does with the ConfigMap volume
            target = pod / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(cm["data"][item["key"]])
        secret = manifests["30-secret-hub.yaml"]
        self.secret = dict(zip(secret["data"], secret_values([secret])))
        env = dict(os.environ, KUBECONFIG=str(REPO / "files" / "hub" / "tests" / "kubeconfig-no-cluster.yaml"),
                   CONFIGPROXY_AUTH_TOKEN="0" * 32, PATH=f"{HUB_VENV}:{os.environ['PATH']}")
        env.pop("PYTHONPATH", None)
        for key, spec in values["hub"]["extraEnv"].items():  # what the kubelet does with extraEnv
            if isinstance(spec, dict):
                env[spec.get("name", key)] = self.secret[spec["valueFrom"]["secretKeyRef"]["key"]]
            else:
                env[key] = spec.replace(POD_DIR, str(pod))
        hub_config = {k: (v.replace(POD_DIR, str(pod)) if isinstance(v, str) else
                          [x.replace(POD_DIR, str(pod)) for x in v] if isinstance(v, list) else v)
                      for k, v in values["hub"]["config"]["JupyterHub"].items() if v is not None}
        self.port, self.hub_port, api_port = _free_port(), _free_port(), _free_port()
        (tmp_path / "jupyterhub_config.py").write_text(HUB_CONFIG.format(
            port=self.port, hub_port=self.hub_port, api_port=api_port, chp=str(CHP), pid=str(tmp_path / "proxy.pid"),
            db=tmp_path / "hub.sqlite", cookie=self.secret["hub.config.JupyterHub.cookie_secret"], hub_config=hub_config,
            template_vars=values["hub"]["templateVars"], services=values["hub"].get("services") or {},
            secret=self.secret, load_roles=values["hub"].get("loadRoles") or {},
            extra_config=values["hub"]["extraConfig"]["10-labhub"].replace(POD_DIR, str(pod))))
        self.env = env
        self.base = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        import time

        self.log = open(self.tmp / "hub.log", "wb")
        self.proc = subprocess.Popen([str(HUB_VENV / "jupyterhub"), "-f", str(self.tmp / "jupyterhub_config.py")],
                                     cwd=self.tmp, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while True:
                assert self.proc.poll() is None, self.log_tail()
                try:
                    if self.browser().get("/hub/api/")[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, self.log_tail()
                time.sleep(0.5)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def log_tail(self):
        return (self.tmp / "hub.log").read_text()[-4000:]

    def browser(self):
        return Browser(self.base)

    def __exit__(self, *exc):
        import os
        import signal

        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.log.close()


class Browser:
    """One user's browser: its own cookies, redirects not followed."""

    def __init__(self, base: str):
        import http.cookiejar
        import urllib.request

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def get(self, path, data=None):
        import urllib.error
        import urllib.parse

        url = path if path.startswith("http") else self.base + path
        try:
            with self.opener.open(url, data=urllib.parse.urlencode(data).encode() if data else None, timeout=10) as resp:
                return resp.status, resp.read().decode(errors="replace"), {k.lower(): v for k, v in resp.headers.items()}
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace"), {k.lower(): v for k, v in err.headers.items()}

    def login_local_group(self, user, password):
        self.get("/hub/login")
        xsrf = next(c.value for c in self.jar if c.name == "_xsrf")
        return self.get("/hub/local_groups/login", {"username": user, "password": password, "_xsrf": xsrf})


@pytest.mark.slow
def test_rendered_files_start_a_real_hub(rendered, tmp_path, grafana_client):
    """The rendered ConfigMap layout, extraConfig stub, Secret -> extraEnv wiring and branding
    start a real JupyterHub 5.5 (files/hub/.venv) behind a real configurable-http-proxy: the
    login page shows every mode and the branding, the logo is served, and a local-group login
    works with the hash that reached the hub only through the Secret. Grafana then signs users in
    through it (every user a viewer, the default)."""
    with RealHub(rendered["root"], "hub_start", tmp_path) as hub:
        browser = hub.browser()
        request, jar = browser.get, browser.jar
        status, page, _ignored = request("/hub/login")
        assert status == 200, page
        for text in ("Sign in with GitHub", "Sign in with company SSO", "/hub/local_groups/login", "/hub/native/login",
                     "Sign in with your organisation", "--labhub-primary: #1f4e79"):
            assert text in page, text
        status, logo, _ignored = request("/hub/logo")
        assert status == 200 and "<title>Labhub</title>" in logo
        xsrf = next(c.value for c in jar if c.name == "_xsrf")
        status, body, _ignored = request("/hub/local_groups/login", {"username": "s1", "password": "wrong-password", "_xsrf": xsrf})
        assert status != 302, body
        status, body, headers = request("/hub/local_groups/login",
                                        {"username": "s1", "password": "course-a-password-123", "_xsrf": xsrf})
        assert status == 302, body
        status, body, _ignored = request("/hub/api/user")
        assert status == 200 and '"name": "s1"' in body.replace('":"', '": "'), body
        status, home, _ignored = request("/hub/home")  # jupyterhub_announcement on every page after login
        assert status == 200 and "Maintenance on Monday" in home and "--labhub-primary" in home, home[-2000:]
        _grafana_sign_ins(hub, rendered, "hub_start", {
            ("t1", "staff-password-456"): "GrafanaAdmin", ("s1", "course-a-password-123"): "Viewer"}, grafana_client)


@pytest.fixture(scope="session")
def grafana_client():
    """The SIMULATED Grafana sign-in (tests/harness/grafana-oauth: Grafana's generic OAuth client side
    with the libraries Grafana uses); `make kube` builds it, this reuses or builds it."""
    build = subprocess.run([str(REPO / "tests" / "harness" / "grafana-oauth" / "build.sh")], capture_output=True,
                           text=True, check=False)
    assert build.returncode == 0, build.stderr[-3000:]
    return build.stdout.strip().splitlines()[-1]


def _grafana_sign_ins(hub: RealHub, rendered, name: str, expected: dict, client: str):
    """Grafana's sign-in through the real hub, for each (user, password): the role Grafana gives
    ('GrafanaAdmin', 'Viewer') or None when the hub itself refuses the user."""
    import json
    import urllib.parse

    from ansible_collections.labhub.platform.plugins.module_utils import _monitoring_grafana

    # Grafana's environment as role monitoring renders it: the same code, the scenario's inventory
    # values (its inventory name is the control-plane address the role would use)
    inputs = yaml.safe_load((rendered["root"] / "inventory" / "host_vars" / name / "main.yml").read_text())
    inputs["node_address"] = name
    env = {e["name"]: e["value"] for e in _monitoring_grafana.grafana_env(inputs) if "value" in e}
    service = hub.values["hub"]["services"]["labhub-grafana"]
    assert env["GF_AUTH_GENERIC_OAUTH_CLIENT_ID"] == service["oauth_client_id"]
    assert env["GF_SERVER_ROOT_URL"] + "login/generic_oauth" == service["oauth_redirect_uri"]
    secret = hub.secret["hub.services.labhub-grafana.apiToken"]
    files = list((rendered["root"] / "inventory").rglob(".credentials/monitoring/grafana_oauth_client_secret"))
    assert secret in [f.read_text().strip() for f in files] and len(secret) == 64
    # what DNS and the hub's Service do: the public URL reaches the proxy, hub:8081 the hub itself
    public = _monitoring_grafana.hub_url(inputs)
    env["GF_AUTH_GENERIC_OAUTH_AUTH_URL"] = env["GF_AUTH_GENERIC_OAUTH_AUTH_URL"].replace(public, hub.base)
    for key in ("TOKEN_URL", "API_URL"):
        env["GF_AUTH_GENERIC_OAUTH_" + key] = env["GF_AUTH_GENERIC_OAUTH_" + key].replace(
            "http://hub.jhub.svc:8081", f"http://127.0.0.1:{hub.hub_port}")

    def grafana(command, **request):
        out = subprocess.run([client, command], input=json.dumps(dict(request, env=env, client_secret=secret)),
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    for (user, password), role in expected.items():
        browser = hub.browser()
        status, body, _ignored = browser.login_local_group(user, password)
        assert status == 302, body
        state = "state-" + user
        status, body, headers = browser.get(grafana("authorize", state=state)["url"])
        if role is None:  # no access:services!service=labhub-grafana: the hub refuses before Grafana
            assert status == 403, (user, status, body[-1000:])
            continue
        assert status == 302, (user, status, body[-2000:], hub.log_tail())
        target = urllib.parse.urlsplit(headers["location"])
        assert f"{target.scheme}://{target.netloc}{target.path}" == service["oauth_redirect_uri"]
        query = urllib.parse.parse_qs(target.query)
        assert query["state"] == [state]
        result = grafana("signin", code=query["code"][0])
        assert "error" not in result, (user, result)
        assert (result["login"], result["email"]) == (user, f"{user}@{urllib.parse.urlsplit(public).hostname}")
        assert (result["role"], result["grafana_admin"]) == (("Admin", True) if role == "GrafanaAdmin" else (role, False))
        # the token Grafana holds reads the user's own model and nothing else
        api = Browser(f"http://127.0.0.1:{hub.hub_port}")
        api.opener.addheaders = [("Authorization", "Bearer " + result["access_token"])]
        assert api.get("/hub/api/user")[0] == 200
        assert api.get("/hub/api/users")[0] == 403
        assert api.get(f"/hub/api/users/{user}/server", {"x": "1"})[0] == 403


@pytest.mark.slow
def test_grafana_viewers_limited_to_a_hub_group_on_a_real_hub(rendered, tmp_path, grafana_client):
    """monitoring_grafana_viewers: groups: hub admins are Grafana admins, members of the group
    viewers, and the hub refuses everyone else before Grafana sees them."""
    _ignored, values, _ignored2 = _load(rendered["root"], "grafana_groups")
    assert values["hub"]["loadRoles"]["labhub-grafana-viewers"] == {
        "groups": ["course-a"], "scopes": ["access:services!service=labhub-grafana"]}
    assert "user" not in values["hub"]["loadRoles"]
    with RealHub(rendered["root"], "grafana_groups", tmp_path) as hub:
        _grafana_sign_ins(hub, rendered, "grafana_groups", {
            ("t1", "staff-password-456"): "GrafanaAdmin", ("s1", "course-a-password-123"): "Viewer",
            ("s3", "course-b-password-789"): None}, grafana_client)
