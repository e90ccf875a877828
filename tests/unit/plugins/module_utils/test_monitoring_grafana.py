"""plugins/module_utils/_monitoring_grafana.py: Grafana's address, exposure and sign-in through
the hub, as data. The role mapping is evaluated by the JMESPath library Grafana uses (the Go
stand-in of tests/harness/grafana-oauth, built by `make kube`); the objects are checked against the
Kubernetes 1.36 OpenAPI schemas. The sign-in against a real JupyterHub is
tests/unit/test_jupyterhub_values.py::test_grafana_signs_in_through_the_real_hub."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import kubernetes_validate  # tests/requirements.in: a missing package fails, never skips
import pytest
import yaml

from ansible_collections.labhub.platform.plugins.module_utils import _monitoring as m
from ansible_collections.labhub.platform.plugins.module_utils import _monitoring_grafana as g

REPO = Path(__file__).resolve().parents[4]
MANIFEST = yaml.safe_load((REPO / "files" / "bundle-manifest.yml").read_text())
TLS = {"jupyterhub_tls_mode": "files", "jupyterhub_tls_cert_file": "/inv/tls/hub.crt",
       "jupyterhub_tls_key_file": "/inv/tls/hub.key"}

# (inventory values, hub URL, Grafana URL, Grafana's end serves TLS, behind the Ingress, NodePort)
EXPOSURES = {
    "nodeport, no hostname: the first control-plane node": (
        {"node_address": "10.0.0.11"}, "http://10.0.0.11:30080", "http://10.0.0.11:30300/", False, False, 30300),
    "nodeport with TLS: the hub's host, https on Grafana's own port": (
        dict(TLS, jupyterhub_hostname="hub.lab.example", node_address="10.0.0.11"),
        "https://hub.lab.example:30443", "https://hub.lab.example:30300/", True, False, 30300),
    "ingress with TLS: /grafana/ on the hub's host": (
        dict(TLS, jupyterhub_expose="ingress", jupyterhub_hostname="hub.lab.example"),
        "https://hub.lab.example", "https://hub.lab.example/grafana/", True, True, 0),
    "ingress, TLS ended in front of the cluster (public URL https, no certificate here)": (
        {"jupyterhub_expose": "ingress", "jupyterhub_hostname": "hub.lab.example",
         "jupyterhub_public_url": "https://hub.lab.example/"},
        "https://hub.lab.example", "https://hub.lab.example/grafana/", False, True, 0),
    "a URL of Grafana's own behind the Ingress": (
        dict(TLS, jupyterhub_expose="ingress", jupyterhub_hostname="hub.lab.example",
             monitoring_grafana_public_url="https://grafana.lab.example"),
        "https://hub.lab.example", "https://grafana.lab.example/", True, True, 0),
    "nodeport 0: no address": (
        {"node_address": "10.0.0.11", "monitoring_grafana_nodeport": 0}, "http://10.0.0.11:30080", "", False, False, 0),
}


@pytest.mark.parametrize("name", EXPOSURES)
def test_grafana_is_exposed_the_way_the_hub_is(name):
    values, hub, grafana, tls, ingress, nodeport = EXPOSURES[name]
    assert g.hub_url(values) == hub
    exp = g.exposure(values)
    assert (exp["url"], exp["tls"], exp["ingress"], exp["nodeport"]) == (grafana, tls, ingress, nodeport)
    login = g.login(values)
    assert login["auth_url"] == hub + "/hub/api/oauth2/authorize"
    assert login["redirect_uri"] == grafana + "login/generic_oauth"
    # Grafana's pod talks to the hub's Service inside the cluster, never through the public URL
    assert login["token_url"] == "http://hub.jhub.svc:8081/hub/api/oauth2/token"
    assert login["api_url"] == "http://hub.jhub.svc:8081/hub/api/user"


def _objects(values):
    return {(o["kind"], o["metadata"]["name"]): o for o in m.objects(m.settings_from_vars(values, MANIFEST))}


def test_objects_follow_the_exposure_and_are_valid_kubernetes():
    nodeport_tls = _objects(dict(EXPOSURES["nodeport with TLS: the hub's host, https on Grafana's own port"][0]))
    ingress_tls = _objects(dict(EXPOSURES["ingress with TLS: /grafana/ on the hub's host"][0]))
    for objs in (nodeport_tls, ingress_tls):
        for obj in objs.values():
            kubernetes_validate.validate(obj, "1.36.0", strict=True)
    # NodePort: Grafana serves https itself with the certificate's Secret; probes speak https
    pod = nodeport_tls[("Deployment", "grafana")]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["GF_SERVER_PROTOCOL"] == "https" and env["GF_SERVER_ROOT_URL"] == "https://hub.lab.example:30300/"
    assert "GF_SERVER_SERVE_FROM_SUB_PATH" not in env
    assert pod["containers"][0]["readinessProbe"]["httpGet"] == {"path": "/api/health", "port": "http", "scheme": "HTTPS"}
    assert {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v} == {
        "admin": "grafana-admin", "oauth": "grafana-oauth", "tls": "grafana-tls"}
    assert nodeport_tls[("Service", "grafana")]["spec"]["type"] == "NodePort"
    assert ("Ingress", "grafana") not in nodeport_tls
    # Ingress: plain http inside, served from /grafana/, the Ingress holds the certificate
    pod = ingress_tls[("Deployment", "grafana")]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert "GF_SERVER_PROTOCOL" not in env and env["GF_SERVER_SERVE_FROM_SUB_PATH"] == "true"
    assert env["GF_SERVER_ROOT_URL"] == "https://hub.lab.example/grafana/"
    assert pod["containers"][0]["livenessProbe"]["httpGet"] == {"path": "/grafana/api/health", "port": "http"}
    assert "tls" not in {v["name"] for v in pod["volumes"]}
    assert ingress_tls[("Service", "grafana")]["spec"]["type"] == "ClusterIP"  # no NodePort around the Ingress
    spec = ingress_tls[("Ingress", "grafana")]["spec"]
    assert spec["ingressClassName"] == "public"
    assert spec["rules"] == [{"host": "hub.lab.example", "http": {"paths": [{
        "path": "/grafana", "pathType": "Prefix", "backend": {"service": {"name": "grafana", "port": {"name": "http"}}}}]}}]
    assert spec["tls"] == [{"hosts": ["hub.lab.example"], "secretName": "grafana-tls"}]
    secret = m.grafana_tls_secret("monitoring", "CERT", "KEY")
    kubernetes_validate.validate(secret, "1.36.0", strict=True)


def test_the_oauth_settings_match_the_hub_client_and_carry_no_secret():
    values = dict(TLS, jupyterhub_expose="ingress", jupyterhub_hostname="hub.lab.example")
    env = {e["name"]: e.get("value") for e in g.grafana_env(values)}
    side = g.hub_side(values)
    assert env["GF_AUTH_GENERIC_OAUTH_CLIENT_ID"] == "service-" + side["service_name"] == side["service"]["oauth_client_id"]
    assert env["GF_SERVER_ROOT_URL"] + "login/generic_oauth" == side["service"]["oauth_redirect_uri"]
    assert env["GF_AUTH_GENERIC_OAUTH_SCOPES"].split() == side["service"]["oauth_client_allowed_scopes"] == ["read:users!user"]
    assert env["GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET__FILE"] == "/etc/grafana-oauth/client-secret"
    assert not [k for k in env if k.endswith("CLIENT_SECRET")]
    assert env["GF_AUTH_GENERIC_OAUTH_ROLE_ATTRIBUTE_STRICT"] == "true"
    # the hub lets Grafana's pods (monitoring namespace) reach its API port, nothing else
    assert side["network_from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                                     "podSelector": {"matchLabels": {"app.kubernetes.io/name": "grafana"}}}]
    off = g.hub_side(dict(values, monitoring_grafana_hub_login=False))
    assert off["service"] is None and off["load_roles"] == {} and off["network_from"] == []
    assert not [e for e in g.grafana_env(dict(values, monitoring_grafana_hub_login=False))
                if e["name"].startswith("GF_AUTH_GENERIC_OAUTH")]
    assert g.login(dict(values, monitoring_enabled=False)) is None


def test_who_may_sign_in_is_decided_by_the_hub_roles():
    every = g.hub_side({"node_address": "n1"})["load_roles"]
    # every user: the user role keeps `self` (z2jh replaces the default role with this entry)
    assert every == {"user": {"scopes": ["self", "access:services!service=labhub-grafana"]}}
    some = g.hub_side({"node_address": "n1", "monitoring_grafana_viewers": "groups",
                       "monitoring_grafana_viewer_groups": ["lab-staff"]})["load_roles"]
    assert some == {"labhub-grafana-viewers": {"groups": ["lab-staff"],
                                               "scopes": ["access:services!service=labhub-grafana"]}}
    assert g.hub_side({"node_address": "n1", "monitoring_grafana_viewers": "none"})["load_roles"] == {}


@pytest.fixture(scope="module")
def jmespath_of_grafana():
    """Grafana's JMESPath library (github.com/jmespath-community/go-jmespath, its go.mod pin), through the
    stand-in's evaluation of role_attribute_path (its `signin` path is exercised against a real hub)."""
    build = subprocess.run([str(REPO / "tests" / "harness" / "grafana-oauth" / "build.sh")], capture_output=True,
                           text=True, check=True)
    return build.stdout.strip().splitlines()[-1]


# hub user model (read:users!user) -> role under each policy
USERS = {"root": {"name": "root", "admin": True, "groups": []},
         "ann": {"name": "ann", "admin": False, "groups": ["lab-staff"]},
         "bob": {"name": "bob", "admin": False, "groups": ["course-a", "it's"]},
         "eve": {"name": "eve", "admin": False, "groups": []}}
POLICIES = {
    ("all", ()): {"root": "GrafanaAdmin", "ann": "Viewer", "bob": "Viewer", "eve": "Viewer"},
    ("groups", ("lab-staff", "it's")): {"root": "GrafanaAdmin", "ann": "Viewer", "bob": "Viewer", "eve": ""},
    ("groups", ("lab-staff",)): {"root": "GrafanaAdmin", "ann": "Viewer", "bob": "", "eve": ""},
    ("none", ()): {"root": "GrafanaAdmin", "ann": "", "bob": "", "eve": ""},
}


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: "%s-%s" % (p[0], len(p[1])))
def test_role_mapping_in_grafanas_jmespath(jmespath_of_grafana, policy):
    path = g.role_attribute_path(policy[0], list(policy[1]))
    email = g.login({"jupyterhub_hostname": "hub.lab.example"})["email_attribute_path"]
    for user, expected in POLICIES[policy].items():
        out = subprocess.run([jmespath_of_grafana, "search"], input=json.dumps(
            {"paths": {"role": path, "email": email}, "data": USERS[user]}), capture_output=True, text=True, check=True)
        result = json.loads(out.stdout)
        assert result["role"] == expected, (user, path, result)
        assert result["email"] == user + "@hub.lab.example"


def _problems(**values):
    return {var: problem for var, problem, _expected in g.problems(values, exists=lambda p: p.startswith("/inv/"))}


def test_bad_settings_are_named():
    assert _problems(node_address="n1") == {}
    assert "monitoring_grafana_viewers" in _problems(node_address="n1", monitoring_grafana_viewers="everyone")
    assert _problems(node_address="n1", monitoring_grafana_viewers="groups") == {
        "monitoring_grafana_viewer_groups": "is empty while monitoring_grafana_viewers is groups"}
    assert "monitoring_grafana_viewer_groups" in _problems(node_address="n1", monitoring_grafana_viewer_groups="staff")
    assert "monitoring_grafana_public_url" in _problems(monitoring_grafana_public_url="grafana.lab.example")
    assert "monitoring_grafana_hub_login" in _problems(monitoring_grafana_hub_login="yes")
    assert "is https" not in str(_problems(**TLS, jupyterhub_hostname="h.example"))
    lets = _problems(jupyterhub_hostname="hub.lab.example", jupyterhub_tls_mode="letsencrypt")
    assert "Let's Encrypt" in lets["monitoring_grafana_tls_cert_file"]
    assert _problems(jupyterhub_hostname="hub.lab.example", jupyterhub_tls_mode="letsencrypt",
                     monitoring_grafana_tls_cert_file="/inv/g.crt", monitoring_grafana_tls_key_file="/inv/g.key") == {}
    assert _problems(node_address="n1", monitoring_grafana_tls_cert_file="/inv/g.crt") == {
        "monitoring_grafana_tls_key_file": "is required with the other (a certificate and its key)"}
    assert _problems(node_address="n1", monitoring_grafana_tls_cert_file="/elsewhere/g.crt",
                     monitoring_grafana_tls_key_file="/inv/g.key") == {
        "monitoring_grafana_tls_cert_file": "does not exist on the controller"}
    assert "monitoring_grafana_public_url" in _problems(node_address="n1", monitoring_grafana_nodeport=0)
    assert _problems(node_address="n1", monitoring_grafana_nodeport=0, monitoring_grafana_hub_login=False) == {}
    assert "jupyterhub_public_url" in _problems(monitoring_grafana_public_url="http://g.example/")


def test_role_defaults_are_the_modules_defaults():
    """Role jupyterhub and the check read unset monitoring_* values from DEFAULTS: they must be
    what role monitoring's (and role jupyterhub's own) defaults say."""
    defaults = {}
    for role in ("monitoring", "jupyterhub"):
        defaults.update(yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text()))
    for key, value in g.DEFAULTS.items():
        if key != "node_address":
            assert defaults[key] == value, key
