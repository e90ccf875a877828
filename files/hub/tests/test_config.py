"""Configuration validation: every bad input fails with an error naming the key."""

import copy

import pytest

import labhub_hub
from labhub_hub.config import ConfigError, collect_errors, format_memory, parse_cpu, parse_memory, resolve_secret, validate
from labhub_hub.passwords import hash_password, is_supported_hash, verify_password

BASE = {
    "auth": {
        "modes": ["github"],
        "github": {
            "client_id": "abc",
            "client_secret": {"env": "GITHUB_CLIENT_SECRET"},
            "allowed_organizations": ["labhub"],
        },
    },
    "spawn": {
        "default_image": "quay.io/jupyter/base-notebook:2025-01-01",
        "profiles": [{"slug": "small", "cpu_limit": 2, "mem_limit": "4Gi"}],
    },
}


def with_changes(**paths):
    data = copy.deepcopy(BASE)
    for dotted, value in paths.items():
        node = data
        keys = dotted.split("__")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return data


def expect_error(data, key, fragment=""):
    with pytest.raises(ConfigError) as err:
        validate(data)
    assert err.value.key == key, str(err.value)
    assert str(err.value).startswith(f"{key}: ")
    assert fragment in str(err.value)
    return err.value


def test_valid_base_config_normalises():
    out = validate(BASE)
    assert out["auth"]["modes"] == ["github"]
    assert out["auth"]["github"]["github_url"] == "https://github.com"
    assert out["spawn"]["profiles"][0]["mem_limit"] == 4 * 2**30
    assert out["spawn"]["default_profiles"] == ["small"]
    assert out["culling"] == {
        "enabled": True, "timeout": 3600, "every": 600, "concurrency": 10, "maxAge": 0,
        "users": False, "adminUsers": True, "removeNamedServers": False,
    }


def test_unknown_mode():
    expect_error(with_changes(auth__modes=["github", "ldap"]), "auth.modes[1]", "unknown login mode 'ldap'")


def test_no_mode():
    expect_error(with_changes(auth__modes=[]), "auth.modes", "at least one")


def test_missing_client_secret_for_chosen_mode():
    data = copy.deepcopy(BASE)
    del data["auth"]["github"]["client_secret"]
    expect_error(data, "auth.github.client_secret", "required for login mode 'github'")
    data["auth"] = {"modes": ["oidc"], "oidc": {"issuer": "https://kc/realms/lab", "client_id": "x", "allowed_groups": ["a"]}}
    expect_error(data, "auth.oidc.client_secret", "required for login mode 'oidc'")


def test_inline_secret_is_refused():
    expect_error(with_changes(auth__github__client_secret="s3cr3t"), "auth.github.client_secret", "never inline")


def test_secret_reference_shape():
    expect_error(with_changes(auth__github__client_secret={"vault": "x"}), "auth.github.client_secret", "{env: VARIABLE}")


def test_unrestricted_provider_is_refused():
    data = copy.deepcopy(BASE)
    data["auth"]["github"]["allowed_organizations"] = []
    expect_error(data, "auth.github.allowed_organizations")
    data["auth"] = {"modes": ["oidc"], "oidc": {"issuer": "https://kc", "client_id": "x", "client_secret": {"env": "S"}}}
    expect_error(data, "auth.oidc.allowed_groups")


def test_oidc_without_discovery_needs_endpoints():
    data = copy.deepcopy(BASE)
    data["auth"] = {"modes": ["oidc"], "oidc": {"discovery": False, "client_id": "x", "client_secret": {"env": "S"},
                                               "allowed_groups": ["g"], "authorize_url": "https://kc/auth"}}
    expect_error(data, "auth.oidc.token_url", "discovery is false")


def test_cookie_sso_needs_whoami_url():
    data = copy.deepcopy(BASE)
    data["auth"] = {"modes": ["cookie_sso"], "cookie_sso": {"cookie_name": "s", "login_url": "https://sso/login"}}
    expect_error(data, "auth.cookie_sso.whoami_url", "required")
    data["auth"]["cookie_sso"]["whoami_url"] = "ftp://x"
    expect_error(data, "auth.cookie_sso.whoami_url", "http(s) URL")


def test_dummy_refused_outside_test_mode():
    data = with_changes(auth__modes=["github", "dummy"])
    expect_error(data, "auth.modes", "refused unless test_mode")
    data["test_mode"] = True
    assert validate(data)["auth"]["modes"] == ["github", "dummy"]


def test_local_groups_plain_password_refused_hash_accepted():
    data = copy.deepcopy(BASE)
    data["auth"] = {"modes": ["local_groups"], "local_groups": {"groups": {"physics": {"members": ["ann"], "password_hash": "hunter2"}}}}
    expect_error(data, "auth.local_groups.groups.physics.password_hash", "never a plain password")
    data["auth"]["local_groups"]["groups"]["physics"]["password_hash"] = hash_password("pw", iterations=1000)
    assert validate(data)["auth"]["local_groups"]["groups"]["physics"]["password_hash"]["inline"].startswith("pbkdf2_sha256$")
    data["auth"]["local_groups"]["groups"]["physics"]["password_hash"] = {"env": "PHYSICS_HASH"}
    assert validate(data)["auth"]["local_groups"]["groups"]["physics"]["password_hash"] == {"env": "PHYSICS_HASH"}


def test_team_mapped_to_unknown_profile():
    err = expect_error(with_changes(spawn__teams={"labhub:ml": ["small", "huge"]}), "spawn.teams.labhub:ml[1]")
    assert "unknown profile 'huge'" in str(err)


def test_default_profiles_unknown():
    expect_error(with_changes(spawn__default_profiles=["nope"]), "spawn.default_profiles[0]")


@pytest.mark.parametrize("value", ["two", "2 cores", "-1", True, "", "1.5.2", {"a": 1}])
def test_invalid_cpu_quantity(value):
    expect_error(with_changes(spawn__profiles=[{"slug": "small", "cpu_limit": value}]), "spawn.profiles[0].cpu_limit")


@pytest.mark.parametrize("value", ["4GB", "lots", "-4Gi", "4 Gi", 0, True])
def test_invalid_memory_quantity(value):
    expect_error(with_changes(spawn__profiles=[{"slug": "small", "mem_limit": value}]), "spawn.profiles[0].mem_limit")


def test_guarantee_above_limit():
    expect_error(
        with_changes(spawn__profiles=[{"slug": "small", "mem_limit": "1Gi", "mem_guarantee": "2Gi"}]),
        "spawn.profiles[0].mem_guarantee",
    )


def test_gpu_profile_when_gpu_support_off():
    data = with_changes(spawn__profiles=[{"slug": "small"}, {"slug": "gpu", "gpu": 1}])
    expect_error(data, "spawn.profiles[1].gpu", "spawn.gpu.enabled is false")
    data["spawn"]["gpu"] = {"enabled": True}
    assert validate(data)["spawn"]["profiles"][1]["gpu"] == 1


def test_dynamic_gpu_when_gpu_support_off():
    expect_error(
        with_changes(spawn__dynamic={"enabled": True, "capacity_source": "static", "max_gpu": 2,
                                     "nodes": [{"name": "n", "cpu": 4, "memory": "8Gi"}]}),
        "spawn.dynamic.max_gpu",
    )


def test_dynamic_static_needs_nodes_and_valid_quantities():
    expect_error(with_changes(spawn__dynamic={"enabled": True, "capacity_source": "static"}), "spawn.dynamic.nodes")
    expect_error(
        with_changes(spawn__dynamic={"enabled": True, "capacity_source": "static", "nodes": [{"name": "n", "cpu": "x", "memory": "8Gi"}]}),
        "spawn.dynamic.nodes[0].cpu",
    )


def test_duplicate_and_bad_slugs():
    expect_error(with_changes(spawn__profiles=[{"slug": "a"}, {"slug": "a"}]), "spawn.profiles[1].slug", "duplicate")
    expect_error(with_changes(spawn__profiles=[{"slug": "Bad Slug"}]), "spawn.profiles[0].slug")


def test_unknown_keys_are_named():
    expect_error(with_changes(spawn__profiles=[{"slug": "a", "cpu_limt": 2}]), "spawn.profiles[0].cpu_limt", "unknown key")
    expect_error(with_changes(auth__github__client_sercet={"env": "X"}), "auth.github.client_sercet", "unknown key")
    expect_error(with_changes(culling={"timeout": -1}), "culling.timeout")


def test_session_default_must_be_a_choice():
    expect_error(with_changes(spawn__session={"choices_hours": [1, 2], "default_hours": 3}), "spawn.session.default_hours")


def test_quantity_helpers():
    assert parse_cpu("250m", "k") == 0.25 and parse_cpu(3, "k") == 3.0
    assert parse_memory("1.5Gi", "k") == 3 * 2**29 and parse_memory("2G", "k") == 2 * 10**9
    assert format_memory(3 * 2**29) == "1536Mi" and format_memory(2**30) == "1Gi"


def test_resolve_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("LABHUB_X", "value")
    assert resolve_secret({"env": "LABHUB_X"}, "k") == "value"
    (tmp_path / "s").write_text("from-file\n")
    assert resolve_secret({"file": str(tmp_path / "s")}, "k") == "from-file"
    with pytest.raises(ConfigError, match=r"^auth.github.client_secret: environment variable NOPE_X"):
        resolve_secret({"env": "NOPE_X"}, "auth.github.client_secret")
    with pytest.raises(ConfigError, match="cannot read secret file"):
        resolve_secret({"file": str(tmp_path / "missing")}, "k")


def test_passwords_roundtrip():
    stored = hash_password("correct horse", iterations=1000)
    assert is_supported_hash(stored)
    assert verify_password("correct horse", stored) and not verify_password("wrong", stored)
    import bcrypt

    bhash = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    assert is_supported_hash(bhash) and verify_password("pw", bhash) and not verify_password("px", bhash)
    assert not is_supported_hash("hunter2")


def test_configure_rejects_before_touching_config():
    from traitlets.config import Config

    c = Config()
    with pytest.raises(ConfigError):
        labhub_hub.configure(c, with_changes(auth__modes=["nope"]))
    assert "authenticator_class" not in c.JupyterHub


def test_configure_sets_classes_and_keeps_template_paths():
    from traitlets.config import Config

    c = Config()
    c.JupyterHub.template_paths = ["/etc/jupyterhub/templates"]
    settings = labhub_hub.configure(c, BASE)
    assert c.JupyterHub.authenticator_class.__name__ == "LabhubAuthenticator"
    assert c.JupyterHub.spawner_class.__name__ == "LabhubKubeSpawner"
    assert c.JupyterHub.template_paths[1] == "/etc/jupyterhub/templates"
    assert c.LabhubKubeSpawner.labhub_spawn == settings["spawn"]


def test_load_file_reads_yaml(tmp_path):
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(BASE))
    assert validate(labhub_hub.load_file(str(path)))["auth"]["modes"] == ["github"]


# --- errors found when the hub starts (inside the hub pod) -------------------
def _authenticator(auth):
    from labhub_hub.auth import LabhubAuthenticator

    return LabhubAuthenticator(labhub_auth=validate({"auth": auth, "spawn": BASE["spawn"]})["auth"])


def test_missing_secret_env_at_hub_start_names_the_key(monkeypatch):
    monkeypatch.delenv("GITHUB_CLIENT_SECRET", raising=False)
    with pytest.raises(ConfigError, match=r"^auth.github.client_secret: environment variable GITHUB_CLIENT_SECRET"):
        _authenticator(BASE["auth"])
    monkeypatch.setenv("GITHUB_CLIENT_SECRET", "x")
    auth = _authenticator(BASE["auth"])
    assert auth.children["github"].client_secret == "x"


def test_oidc_discovery_failure_is_clear_and_explicit_endpoints_are_a_fallback(monkeypatch):
    import socket

    from conftest import free_port

    monkeypatch.setenv("OIDC_SECRET", "x")
    port = free_port()  # nothing listens there
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    oidc = {"issuer": f"http://127.0.0.1:{port}/realms/lab", "client_id": "hub", "client_secret": {"env": "OIDC_SECRET"},
            "allowed_groups": ["lab"], "discovery_timeout_seconds": 2}
    with pytest.raises(ConfigError, match=r"^auth.oidc.issuer: OIDC discovery at .* failed"):
        _authenticator({"modes": ["oidc"], "oidc": oidc})
    oidc.update(authorize_url="https://kc/auth", token_url="https://kc/token", userinfo_url="https://kc/userinfo")
    child = _authenticator({"modes": ["oidc"], "oidc": oidc}).children["oidc"]
    assert child.token_url == "https://kc/token" and child.username_claim == "preferred_username"


def test_local_groups_secret_must_hold_a_hash(monkeypatch):
    monkeypatch.setenv("PHYSICS_HASH", "plain-password")
    with pytest.raises(ConfigError, match=r"^auth.local_groups.groups.physics.password_hash: .*not a supported password hash"):
        _authenticator({"modes": ["local_groups"], "local_groups": {"groups": {"physics": {
            "members": ["ann"], "password_hash": {"env": "PHYSICS_HASH"}}}}})


def test_azuread_allowed_tenants_block_other_tenants(monkeypatch):
    monkeypatch.setenv("AZ_SECRET", "x")
    child = _authenticator({"modes": ["azuread"], "azuread": {
        "tenant_id": "t-1", "client_id": "c", "client_secret": {"env": "AZ_SECRET"},
        "allowed_tenants": ["t-1", "t-2"]}}).children["azuread"]
    assert child.allow_all is True  # the tenant is the gate
    model = {"name": "u", "auth_state": {"user": {"tid": "t-2"}}}
    assert child.check_blocked_users("u", model) is True
    model["auth_state"]["user"]["tid"] = "t-evil"
    assert child.check_blocked_users("u", model) is False
    assert child.authorize_url.startswith("https://login.microsoftonline.com/t-1/")


def test_cookie_sso_allowed_groups(monkeypatch):
    child = _authenticator({"modes": ["cookie_sso"], "cookie_sso": {
        "cookie_name": "s", "whoami_url": "http://sso/whoami", "login_url": "http://sso/login",
        "allowed_groups": ["lab"]}}).children["cookie_sso"]
    assert child.allow_all is False
    assert child.check_allowed("a", {"name": "a", "groups": ["lab", "x"]}) is True
    assert child.check_allowed("b", {"name": "b", "groups": ["x"]}) is False


def test_github_child_settings(monkeypatch):
    monkeypatch.setenv("GITHUB_CLIENT_SECRET", "x")
    auth = dict(BASE["auth"], github=dict(BASE["auth"]["github"], username_prefix="gh-"))
    child = _authenticator(auth).children["github"]
    assert child.allowed_organizations == {"labhub"} and "read:org" in child.scope
    assert child.populate_teams_in_auth_state is True and child.manage_groups is True
    assert child.login_url("/hub/") == "/hub/github/oauth_login"
    assert child.labhub_prefix == "gh-"


def test_collect_errors_reports_every_problem_validate_raises_the_first():
    data = with_changes(
        auth__modes=["github", "ldap", "oidc"],
        auth__github__allowed_organizations=[],
        auth__oidc={"issuer": "https://kc/realms/lab", "client_id": "x", "client_secret": {"env": "S"}},
        spawn__profiles=[{"slug": "a", "cpu_limit": "two", "mem_limit": "8 GB"}, {"slug": "b", "gpu": 1}],
        spawn__teams={"t": ["a", "nope"]},
        culling={"timeout": -1},
    )
    keys = [e.key for e in collect_errors(data)]
    assert keys == ["auth.github.allowed_organizations", "auth.modes[1]", "auth.oidc.allowed_groups",
                    "spawn.profiles[0].cpu_limit", "spawn.profiles[0].mem_limit", "spawn.profiles[1].gpu",
                    "spawn.teams.t[1]", "culling.timeout"]
    expect_error(data, keys[0])
    assert collect_errors(BASE) == []
    assert [e.key for e in collect_errors([])] == ["(root)"]
