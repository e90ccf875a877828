# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin labhub.platform.validate: the one validation phase of every Labhub playbook.

Runs on the controller. Builds a view of every inventory host's variables with the
defaults of every Labhub role applied (role defaults are the lowest precedence, as when the
role runs), adds the hardware facts preflight read on the nodes, runs the checks the
playbook needs (plugins/module_utils/_checks.py) and prints ONE table of every problem.
It fails when there is any; it never changes anything and never prints a secret.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os

from ansible.plugins.action import ActionBase
from ansible.plugins.loader import lookup_loader
from ansible.template import trust_as_template
from ansible.utils.display import Display

from ansible_collections.labhub.platform.plugins.module_utils import _checks
from ansible_collections.labhub.platform.plugins.module_utils import _renamed
from ansible_collections.labhub.platform.plugins.module_utils._validation import (
    INVENTORY,
    MISSING,
    Site,
    is_secret,
    render_table,
)

display = Display()

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES_DIR = os.path.join(COLLECTION_ROOT, "roles")
REPORT_ENV = "LABHUB_VALIDATE_REPORT"
# Playbook arguments (extra vars) the checks read from the controller's variables.
OPTION_VARS = ("node", "force", "labhub_render_dir", "remove_node_drain_timeout", "remove_node_drain_delay",
               "remove_node_grace_period", "remove_node_purge")


def load_role_defaults(loader, roles_dir=ROLES_DIR):
    """Every role's defaults/main.yml (raw, trusted templates), role_path resolved per role."""
    defaults = {}
    for role in sorted(os.listdir(roles_dir)):
        path = os.path.join(roles_dir, role, "defaults", "main.yml")
        if not os.path.isfile(path):
            continue
        data = loader.load_from_file(path, trusted_as_template=True) or {}
        role_path = os.path.join(roles_dir, role)
        for name, value in data.items():
            if isinstance(value, str) and "role_path" in value:
                value = trust_as_template(str(value).replace("{{ role_path }}", role_path))
            defaults[name] = value
    return defaults


# Lookups that create files or run commands: never run while validating.
_WRITING_LOOKUPS = frozenset(("password", "ansible.builtin.password", "community.general.random_string",
                              "pipe", "ansible.builtin.pipe", "secret_file", "labhub.platform.secret_file"))


def _safe_lookup(templar, loader, variables, wantlist):
    """A `lookup`/`query` for the validation phase (shadows Jinja's global of the same name)."""

    def lookup(name, *terms, **kwargs):
        want = wantlist or kwargs.pop("wantlist", False)
        kwargs.pop("errors", None)
        if name in _WRITING_LOOKUPS:
            size = kwargs.get("length", 64)
            size = size if isinstance(size, int) and 0 < size <= 256 else 64
            seed = json.dumps([name, [str(t) for t in terms]], sort_keys=True).encode("utf-8")
            value = (hashlib.sha256(seed).hexdigest() * 4)[:size]
            return [value] if want else value
        plugin = lookup_loader.get(name, loader=loader, templar=templar)
        if plugin is None:
            raise ValueError("lookup plugin %r not found" % name)
        result = plugin.run(list(terms), variables=variables, **kwargs)
        if want:
            return result
        return ",".join(str(item) for item in result) if isinstance(result, list) else result

    return lookup


def _walk_names(data, out):
    """Names a task file defines at run time: register, set_fact keys, vars of tasks and plays."""
    if isinstance(data, list):
        for item in data:
            _walk_names(item, out)
    elif isinstance(data, dict):
        if isinstance(data.get("register"), str):
            out.add(data["register"])
        for key in ("ansible.builtin.set_fact", "set_fact", "vars"):
            if isinstance(data.get(key), dict):
                out.update(k for k in data[key] if isinstance(k, str))
        for key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers"):
            _walk_names(data.get(key), out)


def load_known_names(loader, collection_root=COLLECTION_ROOT):
    """Every variable name the collection reads or defines: role specs, defaults and vars, and
    the names tasks and plays define at run time (so facts of earlier plays are not typos)."""
    names = set()
    for role in sorted(os.listdir(os.path.join(collection_root, "roles"))):
        base = os.path.join(collection_root, "roles", role)
        for sub in ("defaults", "vars"):
            path = os.path.join(base, sub, "main.yml")
            if os.path.isfile(path):
                names.update((loader.load_from_file(path) or {}).keys())
        path = os.path.join(base, "meta", "argument_specs.yml")
        if os.path.isfile(path):
            for entry in ((loader.load_from_file(path) or {}).get("argument_specs") or {}).values():
                names.update((entry or {}).get("options") or {})
        tasks = os.path.join(base, "tasks")
        for name in sorted(os.listdir(tasks)) if os.path.isdir(tasks) else []:
            if name.endswith(".yml"):
                _walk_names(loader.load_from_file(os.path.join(tasks, name)), names)
    playbooks = os.path.join(collection_root, "playbooks")
    for name in sorted(os.listdir(playbooks)):
        if name.endswith(".yml"):
            _walk_names(loader.load_from_file(os.path.join(playbooks, name)), names)
    return names


def load_role_specs(loader, roles_dir=ROLES_DIR):
    """role -> the options of its `main` entry point in meta/argument_specs.yml."""
    specs = {}
    for role in sorted(os.listdir(roles_dir)):
        path = os.path.join(roles_dir, role, "meta", "argument_specs.yml")
        if os.path.isfile(path):
            data = loader.load_from_file(path) or {}
            specs[role] = ((data.get("argument_specs") or {}).get("main") or {}).get("options") or {}
    return specs


class _LazySite(Site):
    """A Site whose variables are templated on first access, per host, like Ansible does."""

    def __init__(self, templar, raw_by_host, defaults, loader=None, **kwargs):
        super(_LazySite, self).__init__(values={h: {} for h in raw_by_host}, **kwargs)
        self._templar = templar
        self._loader = loader
        self._raw = raw_by_host
        self._defaults = defaults
        self._cache = {}
        self._templars = {}
        self.template_errors = []

    def _merged(self, host):
        merged = dict(self._defaults)
        merged.update(self._raw.get(host, {}))
        # Read-only lookups run as usual; those that write (a generated password file) give a
        # placeholder of the shape they would generate: the validation phase never writes.
        merged["lookup"] = _safe_lookup(self._templar, self._loader, merged, wantlist=False)
        merged["query"] = merged["q"] = _safe_lookup(self._templar, self._loader, merged, wantlist=True)
        return merged

    def explicit_names(self, host):
        explicit = getattr(self, "_raw_explicit", None)
        if explicit is not None:
            return set(explicit.get(host, set()))
        return set(self._raw.get(host, {}))

    def has(self, host, name):
        explicit = getattr(self, "_raw_explicit", None)
        if explicit is not None:
            return name in explicit.get(host, set())
        return name in self._raw.get(host, {})

    def get(self, host, name, default=None):
        key = (host, name)
        if key in self._cache:
            value = self._cache[key]
            return default if value is MISSING else value
        raw = self._raw.get(host, {})
        if name not in raw and name not in self._defaults:
            return default
        if host not in self._templars:
            self._templars[host] = self._templar.copy_with_new_env(available_variables=self._merged(host))
        source = raw[name] if name in raw else self._defaults[name]
        try:
            value = self._templars[host].template(source)
        except Exception as exc:  # pylint: disable=broad-except
            reason = type(exc).__name__ if is_secret(name) else " ".join(str(exc).split())[:300]
            self.template_errors.append((host, name, reason))
            value = MISSING
        self._cache[key] = value
        return default if value is MISSING else value


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("playbook", "scope", "hardware_var", "checks", "vars"))

    @staticmethod
    def _overlay_play_vars(task_vars, raw_by_host, defaults, scope):
        """Play vars, role parameters and include vars are not host variables: take the Labhub
        variables of this task's context that differ from the host's own and from the role
        defaults, and give them to every host in scope (they apply to the whole play), so a
        role run alone with `vars:` is validated with the values it will use."""
        current = task_vars.get("inventory_hostname")
        base = raw_by_host.get(current)
        if base is None:
            return
        extras = {}
        for name, value in task_vars.items():
            if not name.startswith(_renamed.PREFIXES) or name.startswith("__"):
                continue
            if name in base and base[name] == value:
                continue
            if name in defaults and defaults[name] == value:
                continue
            if name not in base and name in defaults and isinstance(value, str) and "role_path" in value:
                continue
            if name in base or name in defaults or name in _renamed.SITE_VARIABLES:
                extras[name] = value
            elif name.startswith(tuple(p for p in _renamed.PREFIXES if p != "labhub_")):
                extras[name] = value
        if not extras:
            return
        for host in (scope if scope is not None else list(raw_by_host)):
            if host in raw_by_host:
                merged = dict(raw_by_host[host])
                merged.update(extras)
                raw_by_host[host] = merged

    @staticmethod
    def _hardware(raw, var):
        result = raw.get(var)
        if not isinstance(result, dict):
            return MISSING
        facts = (result.get("ansible_facts") or {}).get("labhub_hardware")
        if isinstance(facts, dict):
            return dict(facts)
        return {"error": result.get("msg") or "no facts returned", "unreachable": bool(result.get("unreachable"))}

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        playbook = args.get("playbook", "site")
        if playbook not in _checks.PLAYBOOKS:
            result.update(failed=True, msg="Failed to validate playbook '%s' due to: unknown playbook; known: %s"
                          % (playbook, ", ".join(sorted(_checks.PLAYBOOKS))))
            return result
        names = args.get("checks") or None
        hostvars = task_vars["hostvars"]
        groups = {k: list(v) for k, v in task_vars.get("groups", {}).items()}
        hosts = list(groups.get("all", []))
        raw_by_host = {h: hostvars.raw_get(h) for h in hosts}
        defaults = load_role_defaults(self._loader)
        self._overlay_play_vars(task_vars, raw_by_host, defaults, args.get("scope"))
        # Variables the play (or the role's task) sets and hostvars does not hold: play vars,
        # include_role vars. They apply to every host, as in the play that passes them.
        overrides = args.get("vars") or {}
        if overrides:
            raw_by_host = {h: dict(raw, **overrides) for h, raw in raw_by_host.items()}
            raw_by_host[INVENTORY] = dict(overrides)
        hardware_var = args.get("hardware_var", "preflight_hardware_result")
        hardware = {}
        for host in hosts:
            hw = self._hardware(raw_by_host[host], hardware_var)
            if hw is not MISSING:
                hardware[host] = hw
        scope = args.get("scope")
        if scope is None:
            scope = task_vars.get("ansible_play_hosts_all") or hosts
        options = {}
        for name in OPTION_VARS:
            if name in task_vars:
                try:
                    options[name] = self._templar.template(task_vars[name])
                except Exception:  # pylint: disable=broad-except
                    options[name] = task_vars[name]
        site = _LazySite(self._templar, raw_by_host, defaults, loader=self._loader,
                         groups=groups, hardware=hardware, scope=[h for h in scope if h in hosts],
                         playbook=playbook, options=options)
        site.specs = load_role_specs(self._loader)
        site.known_names = load_known_names(self._loader)
        report = _checks.run(site, names)
        _checks.add_template_errors(report, site.template_errors)
        report.merge_same_on_all_hosts(hosts)
        rows = report.rows
        report_file = os.environ.get(REPORT_ENV)
        if report_file:
            with open(report_file, "w") as handle:
                json.dump([r.as_dict() for r in rows], handle, indent=1)
        result["changed"] = False
        result["problem_count"] = len(rows)
        # the rows themselves (values already redacted), for callers and tests that read results
        result["problems"] = [r.as_dict() for r in rows]
        result["checks"] = list(names or _checks.PLAYBOOKS[playbook])
        if rows:
            hosts_hit = sorted(set(r.host for r in rows), key=lambda h: (h != INVENTORY, h))
            display.display("\n".join(["", "Labhub validation (%s): %d problem(s)" % (playbook, len(rows))]
                                      + render_table(rows) + [""]), stderr=False)
            result["failed"] = True
            result["msg"] = ("Validation found %d problem(s) on %s (table above). Nothing was changed; fix the "
                             "inventory or the nodes and run again." % (len(rows), ", ".join(hosts_hit)))
        else:
            result["msg"] = "Validation passed: %d check(s) on %d host(s)" % (len(result["checks"]), len(site.scope))
        return result
