# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""No secret leaves its place (issue 10).

Distinct canary values are planted in EVERY secret variable of an inventory (client secrets of
every OAuth mode, the hub cookie secret and crypt key, the local groups' password hashes, hub
service tokens, the portal's hub API token, database password, bearer token, cookie secret,
MySQL URL password, a secret-looking portal_extra_settings entry, Grafana's admin password, the TLS
private key), some
plain and some vault-encrypted (`ansible-vault encrypt_string`). Then the real
`ansible-playbook playbooks/render.yml` runs with the default callback, at default verbosity and
at -vvvv, on inventories whose hosts fail validation in different ways (storage kind, admin
users as a mapping, a profile's cpu, a portal setting) next to hosts that render successfully.

Asserted: the failing runs exit non-zero; no canary appears, raw or base64-encoded (every
alignment), in stdout+stderr or in any file written outside the allowed places, which are the
Kubernetes Secret manifests and 0600 files under <inventory>/.credentials/ (0700). Secrets the
role generates (cookie secret, crypt key, portal token) are treated as canaries too once read.
The exact validation messages are NOT asserted (they belong to the validator).
"""
from __future__ import annotations

import base64
import concurrent.futures
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "files" / "hub"))
from labhub_hub.passwords import hash_password  # noqa: E402  pylint: disable=wrong-import-position

VAULT_PASSWORD = "canary-vault-password-" + secrets.token_hex(8)
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file())
SECRET_OPTION = re.compile(r"(secret|password|token|crypt_key|_hash|mysql_url|extra_settings|local_groups|services)$")


# -- static: the argument specs ---------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_hold_no_template_and_mark_secrets_no_log(role):
    """ansible-core templates a role's whole argument spec (defaults AND descriptions) and prints it,
    resolved, in the failure result of the validation task: no Jinja may appear in it at all."""
    text = (REPO / "roles" / role / "meta" / "argument_specs.yml").read_text()
    assert "{{" not in text and "{%" not in text, f"roles/{role}/meta/argument_specs.yml holds a Jinja template"
    specs = yaml.safe_load(text)["argument_specs"]
    for entry, spec in specs.items():
        for name, option in (spec.get("options") or {}).items():
            if SECRET_OPTION.search(name) and not name.endswith(("_file", "_secrets", "_retries", "_delay")):
                assert option.get("no_log") is True, f"{role}:{entry}:{name} holds a secret: no_log: true"


# -- canaries ---------------------------------------------------------------------------------
def _canary(kind: str) -> str:
    return f"CANARY-{kind}-{secrets.token_hex(12)}"


def _tls_files(root: Path) -> tuple[Path, Path]:
    cert, key = root / "tls" / "tls.crt", root / "tls" / "tls.key"
    cert.parent.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=hub.example.org", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def b64_forms(value: str) -> set[str]:
    """Base64 fragments that any base64 text containing ``value`` must contain: the value encoded
    after 0, 1 and 2 prefix bytes, keeping only the characters that depend on the value alone."""
    data = value.encode()
    forms = {base64.b64encode(data).decode()}
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + data).decode()
        start = -(-8 * k // 6)  # ceil
        end = (8 * (k + len(data))) // 6
        forms.add(enc[start:end])
    return {f for f in forms if len(f) >= 12}


def find_leaks(text: str, canaries: dict[str, str]) -> list[str]:
    found = []
    for name, value in canaries.items():
        if value in text:
            found.append(f"{name} (raw)")
            continue
        if any(form in text for form in b64_forms(value)):
            found.append(f"{name} (base64)")
    return found


def _vault(pairs: list[tuple[str, str]], password_file: Path, env: dict) -> str:
    """A `name: !vault |` block per (name, value), from ONE ansible-vault encrypt_string run (it
    pairs each --name with a value in order; one run per value cost 0.7 s of start-up each)."""
    names = [arg for name, _value in pairs for arg in ("--name", name)]
    proc = subprocess.run(["ansible-vault", "encrypt_string", "--vault-password-file", str(password_file),
                           *names, *(value for _name, value in pairs)],
                          capture_output=True, text=True, check=True, env=env)
    return proc.stdout.strip() + "\n"


def _env(root: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".cache" / "ansible_collections"))
    env.setdefault("ANSIBLE_ROLES_PATH", str(REPO / "roles"))
    env.update({"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default", "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_FORKS": "4", "ANSIBLE_RETRY_FILES_ENABLED": "0",
                "ANSIBLE_LOCAL_TEMP": str(root / "ansible-tmp")})
    return env


PROFILES = [{"name": "cpu-small", "cpu": 1, "memory": "2Gi", "gpus": 0}]
# The roles' own variable names (jupyterhub_*, portal_*): the inventory-wide labhub_hub_* /
# labhub_portal_* names are being renamed to them.
AUTH = {
    "jupyterhub_auth_modes": ["native", "github", "azuread", "auth0", "oidc", "local_groups"],
    "jupyterhub_github_client_id": "gh-client",
    "jupyterhub_azuread_tenant_id": "11111111-2222-3333-4444-555555555555",
    "jupyterhub_azuread_client_id": "az-client",
    "jupyterhub_auth0_domain": "labhub.eu.auth0.com",
    "jupyterhub_auth0_client_id": "a0-client",
    "jupyterhub_oidc_issuer_url": "https://sso.example.org/realms/research",
    "jupyterhub_oidc_client_id": "labhub",
    "jupyterhub_auth_settings": {
        "github": {"allowed_organizations": ["labhub-org:vision"]},
        "azuread": {"allowed_tenants": ["11111111-2222-3333-4444-555555555555"]},
        "auth0": {"allowed_users": ["alice@example.org"]},
        "oidc": {"allowed_groups": ["labhub-users"], "admin_groups": ["admins"]},
    },
    "jupyterhub_profiles": PROFILES,
    "jupyterhub_gpu_enabled": False,
    "jupyterhub_public_url": "https://hub.example.org",
    "jupyterhub_portal_enabled": True,
    "jupyterhub_portal_public_url": "https://portal.example.org",
}


class Site:
    """One temporary site: inventory (plain + vaulted canaries), vault password file, TLS files."""

    def __init__(self, root: Path, hosts: dict[str, dict], env: dict, old_names: bool = False):
        self.root = root
        self.inventory = root / "inventory"
        self.env = env
        (self.inventory / "group_vars" / "all").mkdir(parents=True)
        (self.inventory / "host_vars").mkdir()
        self.password_file = root / "vault-password"
        self.password_file.write_text(VAULT_PASSWORD + "\n")
        self.password_file.chmod(0o600)
        self.cert, self.key = _tls_files(root)
        key_lines = [line for line in self.key.read_text().splitlines() if not line.startswith("-----")]
        self.canaries = {
            "github client secret (vault)": _canary("gh"),
            "azuread client secret": _canary("az"),
            "auth0 client secret (vault)": _canary("a0"),
            "oidc client secret": _canary("oidc"),
            "local group hash (vault)": hash_password(_canary("grp1"), iterations=1000),
            "local group hash": hash_password(_canary("grp2"), iterations=1000),
            "jupyterhub_portal_api_token (vault)": _canary("hubtok"),
            "jupyterhub_cookie_secret": secrets.token_hex(32),
            "jupyterhub_crypt_key (vault)": secrets.token_hex(32),
            "jupyterhub_services api_token": _canary("svc"),
            "portal_database_password (vault)": _canary("pgpw"),
            "portal_token": _canary("ptok"),
            "portal_cookie_secret (vault)": _canary("pcookie"),
            "portal_mysql_url password": _canary("mysql"),
            "portal_extra_settings SMTP_PASSWORD (vault)": _canary("smtp"),
            "monitoring_grafana_admin_password (vault)": _canary("grafana"),
            # Prometheus' hub token: role monitoring's variable, reaching the hub's Secret through role jupyterhub
            "hub metrics token: monitoring_hub_metrics_token (vault)": _canary("hubmetrics"),
            # Grafana's OAuth client secret: role monitoring's variable, the hub service labhub-grafana's token
            "Grafana OAuth client secret: monitoring_grafana_oauth_client_secret (vault)": _canary("grafanaoauth"),
            "TLS private key": key_lines[1],
        }
        c = self.canaries
        vaulted = _vault([
            ("vault_github_client_secret", c["github client secret (vault)"]),
            ("vault_auth0_client_secret", c["auth0 client secret (vault)"]),
            ("vault_group_hash", c["local group hash (vault)"]),
            ("vault_portal_hub_api_token", c["jupyterhub_portal_api_token (vault)"]),
            ("vault_crypt_key", c["jupyterhub_crypt_key (vault)"]),
            ("vault_portal_database_password", c["portal_database_password (vault)"]),
            ("vault_portal_cookie_secret", c["portal_cookie_secret (vault)"]),
            ("vault_smtp_password", c["portal_extra_settings SMTP_PASSWORD (vault)"]),
            ("vault_grafana_admin_password", c["monitoring_grafana_admin_password (vault)"]),
            ("vault_hub_metrics_token", c["hub metrics token: monitoring_hub_metrics_token (vault)"]),
            ("vault_grafana_oauth_client_secret", c["Grafana OAuth client secret: monitoring_grafana_oauth_client_secret (vault)"]),
        ], self.password_file, env)
        (self.inventory / "group_vars" / "all" / "vault.yml").write_text("---\n" + vaulted)
        shared = dict(AUTH)
        shared.update({
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "jupyterhub_github_client_secret": "{{ vault_github_client_secret }}",
            "jupyterhub_azuread_client_secret": c["azuread client secret"],
            "jupyterhub_auth0_client_secret": "{{ vault_auth0_client_secret }}",
            "jupyterhub_oidc_client_secret": c["oidc client secret"],
            "jupyterhub_local_groups": {
                "course-a": {"members": ["s1", "s2"], "password_hash": "{{ vault_group_hash }}"},
                "staff": {"members": ["t1"], "password_hash": c["local group hash"], "admin": True}},
            "jupyterhub_services": {"grafana": {"api_token": c["jupyterhub_services api_token"],
                                                "url": "http://grafana.monitoring:3000"}},
            "portal_database_password": "{{ vault_portal_database_password }}",
            "portal_token": c["portal_token"],
            "portal_cookie_secret": "{{ vault_portal_cookie_secret }}",
            "portal_mysql_url": f"mysql://report:{c['portal_mysql_url password']}@db.example.org:3306/jupyterhub",
            "portal_extra_settings": {"SMTP_PASSWORD": "{{ vault_smtp_password }}", "SMTP_HOST": "mail.example.org"},
            "monitoring_grafana_admin_password": "{{ vault_grafana_admin_password }}",
            "monitoring_hub_metrics_token": "{{ vault_hub_metrics_token }}",
            "monitoring_grafana_oauth_client_secret": "{{ vault_grafana_oauth_client_secret }}",
        })
        (self.inventory / "group_vars" / "all" / "main.yml").write_text(yaml.safe_dump(shared, sort_keys=False))
        if old_names:  # the inventory-wide names the argument spec defaults used to template
            old = {f"labhub_hub_{key[len('jupyterhub_'):]}": value for key, value in shared.items()
                   if key.startswith(("jupyterhub_github", "jupyterhub_azuread", "jupyterhub_auth0", "jupyterhub_oidc",
                                      "jupyterhub_local_groups"))}
            old["portal_hub_api_token"] = "{{ vault_portal_hub_api_token }}"
            (self.inventory / "group_vars" / "all" / "old_names.yml").write_text(yaml.safe_dump(old, sort_keys=False))
        names = list(hosts)  # the first host is the (single) control-plane node, the others workers
        layout = {"all": {"children": {"labhub_cluster": {"children": {
            "labhub_control_plane": {"hosts": {names[0]: None}},
            "labhub_workers": {"hosts": {name: None for name in names[1:]}}}}}}}
        (self.inventory / "hosts.yml").write_text(yaml.safe_dump(layout, sort_keys=False))
        for name, variables in hosts.items():
            data = {"labhub_render_dir": str(root / "out" / name)}
            for key, value in variables.items():
                if value is None:  # a planted secret of the hub itself
                    value = self.canaries[key]
                elif isinstance(value, str):
                    value = value.format(cert=self.cert, key=self.key)
                data[key] = value
            (self.inventory / "host_vars" / f"{name}.yml").write_text(yaml.safe_dump(data, sort_keys=False))
        self.inputs = {self.password_file, self.cert, self.key}
        self.inputs.update(p for p in self.inventory.rglob("*") if p.is_file())

    def run(self, playbook: Path, *extra: str) -> subprocess.CompletedProcess:
        cmd = ["ansible-playbook", str(playbook), "-i", str(self.inventory),
               "--vault-password-file", str(self.password_file), "-e", "labhub_render_hosts=all", *extra]
        return subprocess.run(cmd, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=900, check=False)


# One host per site (render.yml validates the whole inventory first). The planted secrets are in
# group_vars/all everywhere; `planted` also plants the hub's own cookie secret, crypt key, portal
# token and TLS key; `token_generated` leaves only the portal token to generate (the password
# lookup is then the first to create .credentials/); `all_generated` lets the role generate the
# three; the bad_* sites fail validation. The portal's objects are rendered too.
PLANTED = {"jupyterhub_cookie_secret": None, "jupyterhub_crypt_key": "{{{{ vault_crypt_key }}}}",
           "jupyterhub_portal_api_token": "{{{{ vault_portal_hub_api_token }}}}",
           "jupyterhub_tls_mode": "files", "jupyterhub_hostname": "hub.example.org",
           "jupyterhub_tls_cert_file": "{cert}", "jupyterhub_tls_key_file": "{key}"}
TOKEN_GENERATED = {k: v for k, v in PLANTED.items() if k != "jupyterhub_portal_api_token"}
BAD = {
    "bad_portal": {"portal_kube_service_account": "Bad_Name!"},
    "bad_storage": {"jupyterhub_storage_kind": "ceph"},
    "bad_admins": {"jupyterhub_admin_users": {"alice": True, "bob": "admin"}},
    "bad_cpu": {"jupyterhub_profiles": [{"name": "x", "cpu": "2 cores", "memory": "1Gi", "gpus": 0}]},
}
RENDER = REPO / "playbooks" / "render.yml"
# The role alone, without the playbook's own validation pass first: its argument spec is then
# what fails (the path that printed every secret in ansible-core's failure result). Its
# inventory also sets the old inventory-wide names (labhub_hub_*_client_secret, ...) that the
# spec's defaults used to template.
ROLE_ONLY = """---
- name: The jupyterhub role alone
  hosts: all
  gather_facts: false
  roles:
    - role: labhub.platform.jupyterhub
      vars:
        jupyterhub_render_dir: "{{ labhub_render_dir }}"
"""
# (site, verbosity) -> (hosts, playbook or None for render.yml, must succeed)
BAD_HOSTS = {name: dict(TOKEN_GENERATED, **bad) for name, bad in BAD.items()}  # bad_portal first: it renders the portal
# (site, verbosity) -> (hosts, playbook or None for render.yml, must succeed)
RUNS = {
    ("planted", "default"): ({"planted": PLANTED}, None, True),
    ("planted", "vvvv"): ({"planted": PLANTED}, None, True),
    ("token_generated", "default"): ({"token_generated": TOKEN_GENERATED}, None, True),
    ("all_generated", "vvvv"): ({"all_generated": {}}, None, True),
    ("bad", "default"): (BAD_HOSTS, None, False),
    ("bad", "vvvv"): (BAD_HOSTS, None, False),
    ("role_only", "default"): (BAD_HOSTS, ROLE_ONLY, False),
    ("role_only", "vvvv"): (BAD_HOSTS, ROLE_ONLY, False),
}
VERBOSITY = {"default": (), "vvvv": ("-vvvv",)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed for the TLS key canary")
    jobs = {}
    for (site, verbosity), (hosts, playbook, _unused) in RUNS.items():
        root = tmp_path_factory.mktemp(f"canary-{site}-{verbosity}")
        built = Site(root, hosts, _env(root), old_names=playbook is not None)
        if playbook is not None:
            (root / "role_only.yml").write_text(playbook)
            built.inputs.add(root / "role_only.yml")
            jobs[(site, verbosity)] = (built, [root / "role_only.yml", *VERBOSITY[verbosity]])
        else:  # render.yml's usage: one render directory, given with -e
            jobs[(site, verbosity)] = (built, [RENDER, "-e", f"labhub_render_dir={root / 'out' / site}", *VERBOSITY[verbosity]])
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {key: pool.submit(built.run, *args) for key, (built, args) in jobs.items()}
        return {key: (jobs[key][0], futures[key].result()) for key in jobs}


def _allowed(path: Path, site: Site) -> bool:
    """Secrets may be in Kubernetes Secret manifests and in 0600 files under .credentials/."""
    if ".credentials" in path.relative_to(site.root).parts:
        return True  # modes asserted separately
    if path.suffix in (".yaml", ".yml") and "manifests" in path.parts:
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        except yaml.YAMLError:
            return False
        return bool(docs) and all(d.get("kind") == "Secret" for d in docs)
    return False


def _generated(site: Site) -> dict[str, str]:
    creds = site.inventory / ".credentials"
    return {f"generated {p.name}": p.read_text().strip() for p in creds.rglob("*")
            if p.is_file() and not p.name.endswith("ansible_lockfile")} if creds.is_dir() else {}


def _tail(proc: subprocess.CompletedProcess) -> str:
    return f"rc {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("site,verbosity", list(RUNS))
def test_no_canary_in_output(runs, site, verbosity):
    built, proc = runs[(site, verbosity)]
    if RUNS[(site, verbosity)][2]:
        assert proc.returncode == 0, _tail(proc)
    else:
        assert proc.returncode != 0, "validation must fail: " + _tail(proc)
    canaries = dict(built.canaries, **_generated(built))
    leaks = find_leaks(proc.stdout + proc.stderr, canaries)
    assert not leaks, f"secrets printed ({site}, {verbosity}): {leaks}"


@pytest.mark.slow
@pytest.mark.parametrize("site,verbosity", list(RUNS))
def test_no_canary_in_written_files(runs, site, verbosity):
    built = runs[(site, verbosity)][0]
    canaries = dict(built.canaries, **_generated(built))
    leaks = {}
    for path in built.root.rglob("*"):
        if not path.is_file() or path in built.inputs or _allowed(path, built):
            continue
        found = find_leaks(path.read_text(errors="replace"), canaries)
        if found:
            leaks[str(path.relative_to(built.root))] = found
    assert not leaks


@pytest.mark.slow
def test_planted_secrets_are_in_the_secret_manifests_only(runs):
    """The canaries really reach the render (else the absence above would prove nothing)."""
    built, proc = runs[("planted", "default")]
    out = built.root / "out" / "planted"
    assert (out / "jupyterhub" / "values.yaml").is_file(), _tail(proc)
    assert (out / "portal").is_dir(), "the portal's objects are rendered too"
    secret_text = "".join(p.read_text() for p in (out / "jupyterhub" / "manifests").glob("*secret*"))
    for name, value in built.canaries.items():
        if name.startswith(("portal_", "monitoring_")):
            continue  # the portal's own secrets and Grafana's admin Secret are not part of a render
        encoded = value.encode() if name != "TLS private key" else built.key.read_bytes()
        assert base64.b64encode(encoded).decode() in secret_text, name
    for path in out.rglob("*"):
        if path.is_file() and _allowed(path, built):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.slow
@pytest.mark.parametrize("site", ["token_generated", "all_generated"])
def test_credentials_directory_is_private(runs, site):
    for (name, _verbosity), (built, proc) in runs.items():
        if name != site:
            continue
        creds = built.inventory / ".credentials"
        assert creds.is_dir(), "the generated secrets are kept under <inventory>/.credentials: " + _tail(proc)
        files = {p.name for p in creds.rglob("*") if p.is_file()}
        assert files >= ({"portal_api_token"} if site == "token_generated" else {"cookie_secret", "crypt_key", "portal_api_token"})
        for path in [creds, *creds.rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {oct(mode)}"


def test_base64_forms_find_embedded_values():
    value = "CANARY-x-0123456789abcdef"
    for prefix in ("", "a", "ab", "abc", "key: "):
        for suffix in ("", "z", "\n"):
            encoded = base64.b64encode((prefix + value + suffix).encode()).decode()
            assert find_leaks(encoded, {"v": value}) == ["v (base64)"], (prefix, suffix)
    assert not find_leaks(base64.b64encode(b"something else entirely").decode(), {"v": value})


def test_secret_file_lookup_creates_private_directories(tmp_path):
    """labhub.platform.secret_file: missing directories 0700 whatever the umask, the file 0600,
    the same secret on the next call (ansible.builtin.password made the parents 0755)."""
    path = tmp_path / "inventory" / ".credentials" / "jupyterhub" / "portal_api_token"
    cmd = ["ansible", "localhost", "-m", "ansible.builtin.debug", "-a",
           f"msg={{{{ lookup('labhub.platform.secret_file', '{path}', chars=['digits', 'abcdef'], length=64) }}}}"]
    env = _env(tmp_path)
    outputs = [subprocess.run(cmd, env=env, capture_output=True, text=True, check=True,
                              preexec_fn=lambda: os.umask(0o022)).stdout for _attempt in range(2)]
    secret = path.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    assert all(secret in out for out in outputs), outputs
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for directory in (tmp_path / "inventory", path.parent.parent, path.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
