"""Labhub's hub-side extensions for JupyterHub 5 / z2jh 4.4.0.

Entry point (what the chart's ``hub.extraConfig`` stub calls)::

    import labhub_hub
    labhub_hub.configure(c, labhub_hub.load_file("/usr/local/etc/jupyterhub/labhub/config.yaml"))

See files/hub/README.md for the configuration contract.
"""

import os

from .config import ConfigError, validate

__version__ = "0.1.0"
__all__ = ["ConfigError", "configure", "load_file", "validate", "__version__"]

DEFAULT_CONFIG_PATH = "/usr/local/etc/jupyterhub/labhub/config.yaml"
TEMPLATE_PATH = os.path.join(os.path.dirname(__file__), "templates")


def load_file(path=None):
    """Read the plain-data configuration (YAML or JSON) from ``path``."""
    import yaml

    path = path or os.environ.get("LABHUB_HUB_CONFIG", DEFAULT_CONFIG_PATH)
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def configure(c, data, spawner=True):
    """Apply Labhub's configuration to a JupyterHub traitlets config ``c``.

    ``data`` is the plain configuration (see README); it is validated first and
    a :class:`ConfigError` naming the offending key is raised before ``c`` is
    touched.  Returns the validated configuration.

    With ``spawner=False`` only authentication is configured (the hub keeps
    whatever spawner it has), which the login tests use.
    """
    settings = validate(data)
    from .auth import LabhubAuthenticator

    c.JupyterHub.authenticator_class = LabhubAuthenticator
    c.LabhubAuthenticator.labhub_auth = settings["auth"]
    c.LabhubAuthenticator.admin_users = set(settings["auth"]["admin_users"])
    # groups come from the identity source of each login mode
    c.LabhubAuthenticator.manage_groups = True

    paths = c.JupyterHub.template_paths if "template_paths" in c.JupyterHub else []
    paths = list(paths or [])
    if TEMPLATE_PATH not in paths:
        paths.insert(0, TEMPLATE_PATH)
    c.JupyterHub.template_paths = paths

    if settings["notices"]["enabled"]:
        # POST/DELETE /hub/api/labhub/notices/<user> and the user's notices on their hub pages
        from .notices import install

        install(c)

    if spawner:
        from . import spawner as S

        c.JupyterHub.spawner_class = S.LabhubKubeSpawner
        c.LabhubKubeSpawner.labhub_spawn = settings["spawn"]
        # explicit, so z2jh's c.KubeSpawner.profile_list (singleuser.profileList,
        # default []) and any options_form cannot shadow Labhub's
        c.LabhubKubeSpawner.profile_list = S.labhub_profile_list
        c.LabhubKubeSpawner.options_form = S.labhub_options_form
        c.LabhubKubeSpawner.options_from_form = S.labhub_options_from_form
    return settings
