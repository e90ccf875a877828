# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The portal's settings mapping (module_utils/_portal_settings.py) and the portal check's edges
that the data cases (validation_cases/portal.yaml) cannot express."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest
import test_validation as tv
import yaml
from ansible_collections.labhub.platform.plugins.module_utils import _checks
from ansible_collections.labhub.platform.plugins.module_utils import (
    _portal_settings as ps,
)

REPO = tv.REPO
VALID = next(c for c in tv.CASES if c["id"] == "portal-valid")


@pytest.fixture
def fresh_model():
    """Load the portal's config.py again (it reads PORTAL_ENV_FILE when imported)."""
    saved = dict(ps._MODULE), dict(ps._ISOLATED)
    ps._MODULE.clear()
    ps._ISOLATED.clear()
    yield
    ps._MODULE.clear()
    ps._MODULE.update(saved[0])
    ps._ISOLATED.clear()
    ps._ISOLATED.update(saved[1])


def test_the_controller_environment_and_env_file_do_not_leak_into_the_check(tmp_path, monkeypatch, fresh_model):
    env_file = tmp_path / "portal.env"
    env_file.write_text("PORTAL_DEFAULT_GPU_HOUR_RATE=-1\nPORTAL_TIMEZONE=Mars/Olympus\n")
    monkeypatch.setenv("PORTAL_ENV_FILE", str(env_file))
    monkeypatch.setenv("PORTAL_TIMEZONE", "Mars/Olympus")
    monkeypatch.setenv("PORTAL_RECORD_INTERVAL", "-5")
    monkeypatch.setenv("PORTAL_DATABASE_URL", "sqlite:///x.db")
    assert tv.run_case(VALID, tmp_path) == []
    assert os.environ["PORTAL_ENV_FILE"] == str(env_file)


def test_a_controller_without_pydantic_settings_gets_one_row_naming_it(tmp_path, monkeypatch):
    def unavailable(path=ps.CONFIG_PATH):
        raise ps.ModelUnavailable("the controller's Python lacks pydantic_settings: install pydantic and "
                                  "pydantic-settings")

    monkeypatch.setattr(ps, "load_config_module", unavailable)
    case = dict(VALID, groups={"labhub_cluster": ["cp1", "w1"], "labhub_control_plane": ["cp1"],
                               "labhub_workers": ["w1"], "labhub_portal": ["cp1", "w1"]})
    rows = tv.run_case(case, tmp_path)
    assert [(r.host, r.variable) for r in rows] == [("(inventory)", "(controller) pydantic-settings")]
    assert "pydantic-settings" in rows[0].problem and "pip install" in rows[0].expected


def test_hub_token_length_agrees_with_the_portal_model():
    module = ps.load_config_module()
    assert module.MIN_HUB_TOKEN_LENGTH == ps.HUB_TOKEN_MIN_LENGTH == 32
    assert module.MIN_SECRET_LENGTH == ps.SECRET_MIN_LENGTH


def test_every_input_is_a_role_variable_and_every_setting_a_model_field():
    with open(os.path.join(REPO, "roles", "portal", "defaults", "main.yml")) as handle:
        defaults = yaml.safe_load(handle)
    assert set(ps.INPUTS) - set(defaults) <= set(ps.SECRETS)
    fields = ps.model_fields()
    assert {name.lower() for name in ps.MANAGED} <= fields | {"env_file"}


def test_build_writes_what_the_template_wrote():
    values = {"portal_database_user": "labhub_portal", "portal_database_password": "a/b+c=d~e",
              "portal_database_host": "fd00::5", "portal_database_port": 5432, "portal_database_name": "labhub_portal",
              "portal_database_options": {"ssl": "require", "x": True}, "portal_bind_port": 8780,
              "portal_cookie_secure": "no", "portal_kubeconfig_path": "/etc/labhub/portal-kubeconfig",
              "portal_mysql_url": "", "portal_extra_settings": {"CURRENCY": "USD", "GAP_INTERVALS": 4, "X": None}}
    built = ps.build(values, kubeconfig_present=False)
    assert built["DATABASE_URL"] == ("postgresql+asyncpg://labhub_portal:a%2Fb%2Bc%3Dd~e@[fd00::5]:5432/labhub_portal"
                                     "?ssl=require&x=True")
    assert built["BIND_PORT"] == "8780" and built["COOKIE_SECURE"] == "false" and built["GAP_INTERVALS"] == "4"
    assert "KUBECONFIG" not in built and "MYSQL_URL" not in built and "X" not in built
    assert list(built) == sorted(built)


def test_portal_is_checked_by_the_playbooks_that_run_the_role():
    for playbook in ("site", "preflight", "render", "portal", "portal_render"):
        assert "portal" in _checks.PLAYBOOKS[playbook], playbook
