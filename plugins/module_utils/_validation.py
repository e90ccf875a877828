# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""The one validation phase of every Labhub playbook: problems, the table, shared checks.

Every check of the collection is a Python function ``check_<concern>(site, report)``
(``_checks_<concern>.py``). It reads variables through a :class:`Site` (the inventory with
every role's defaults applied, one view per host, plus the hardware facts read by
preflight) and adds :class:`Problem` rows to a :class:`Report`. It never raises on bad
input and never stops at the first problem: the action plugin ``labhub.platform.validate``
runs every check a playbook needs and prints ONE table of all rows, then fails before any
task changes a host or writes a file.

A row names the host (or ``(inventory)``), the variable as the user writes it in the
inventory, the value (redacted when the variable is a secret), what is wrong and what is
expected. Secret values never reach a row: :func:`is_secret` decides by name, and
:meth:`Report.add` redacts for it.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

INVENTORY = "(inventory)"
ALL_HOSTS = "(all hosts)"
MISSING = object()

# --------------------------------------------------------------------------------------
# Secrets: by name, so that a new secret variable is covered without being listed.
# --------------------------------------------------------------------------------------
_SECRET_NAME_RE = re.compile(
    r"(secret|password|passwd|token|crypt_key|private_key|_hash$|^vault_|mysql_url$|extra_settings)",
    re.IGNORECASE,
)
REDACTED = "<secret>"


def is_secret(name):
    """True when a variable (or a dotted/indexed path into one) holds a secret."""
    return bool(_SECRET_NAME_RE.search(str(name or "")))


def show(value, secret=False, limit=80):
    """One-line display of a value for the table; secrets are never shown."""
    if value is MISSING:
        return "(not set)"
    if secret:
        return REDACTED
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def type_name(value):
    """The YAML name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


# --------------------------------------------------------------------------------------
# Problems and the report
# --------------------------------------------------------------------------------------
class Problem:
    """One row of the table."""

    __slots__ = ("host", "variable", "value", "problem", "expected")

    def __init__(self, host, variable, value, problem, expected):
        self.host = host
        self.variable = variable
        self.value = value
        self.problem = problem
        self.expected = expected

    def as_dict(self):
        return {"host": self.host, "variable": self.variable, "value": self.value,
                "problem": self.problem, "expected": self.expected}

    def __repr__(self):
        return "Problem(%r)" % (self.as_dict(),)


class Report:
    """Collects problems; never raises. Duplicate rows are kept once."""

    def __init__(self):
        self._rows = []
        self._seen = set()
        self._covers = set()

    def add(self, host, variable, problem, expected="", value=MISSING, secret=None, covers=()):
        """Add a row. ``value`` is the raw value (shown redacted when the variable is secret).

        ``covers``: other names the row is about (e.g. the role variable behind an inventory
        variable), so that :meth:`has` finds the row under them too."""
        for name in covers:
            self._covers.add((str(host), str(name)))
        if secret is None:
            secret = is_secret(variable)
        shown = "" if value is MISSING else show(value, secret)
        row = Problem(str(host), str(variable), shown, str(problem), str(expected or ""))
        key = (row.host, row.variable, row.problem)
        if key in self._seen:
            return
        self._seen.add(key)
        self._rows.append(row)

    @property
    def rows(self):
        """Rows with inventory-wide ones first, then by host; check order kept within a host."""
        order = {INVENTORY: 0, ALL_HOSTS: 1}
        return sorted(self._rows, key=lambda r: (order.get(r.host, 2), r.host))

    def __len__(self):
        return len(self._rows)

    def has(self, host, variable):
        """True when a row for the host (or all hosts) names the variable or a part of it."""
        for row_host, name in self._covers:
            if row_host in (host, INVENTORY, ALL_HOSTS) and (
                    name == variable or name.startswith(variable + ".") or name.startswith(variable + "[")):
                return True
        for row in self._rows:
            if row.host in (host, INVENTORY, ALL_HOSTS) and (
                    row.variable == variable or row.variable.startswith(variable + ".")
                    or row.variable.startswith(variable + "[")):
                return True
        return False

    def variables(self):
        return [r.variable for r in self.rows]

    def merge_same_on_all_hosts(self, all_hosts):
        """Rows identical on every host of the inventory become one ``(all hosts)`` row."""
        all_hosts = list(all_hosts)
        if len(all_hosts) < 2:
            return
        groups = {}
        for row in self._rows:
            groups.setdefault((row.variable, row.value, row.problem, row.expected), []).append(row)
        merged = []
        done = set()
        for row in self._rows:
            key = (row.variable, row.value, row.problem, row.expected)
            same = groups[key]
            if len(same) > 1 and sorted(r.host for r in same) == sorted(all_hosts):
                if key not in done:
                    done.add(key)
                    merged.append(Problem(ALL_HOSTS, row.variable, row.value, row.problem, row.expected))
                continue
            merged.append(row)
        self._rows = merged
        self._seen = set((r.host, r.variable, r.problem) for r in merged)


HEADERS = ("HOST", "VARIABLE", "VALUE", "PROBLEM", "EXPECTED")


def render_table(rows, width=60):
    """The problem table as text lines: columns separated by ' | ', long cells wrapped."""
    cells = [HEADERS] + [(r.host, r.variable, r.value, r.problem, r.expected) for r in rows]
    cells = [tuple(str(c).replace("|", "/").replace("\n", " ") for c in row) for row in cells]

    def wrap(text, size):
        words, lines, cur = text.split(" "), [], ""
        for word in words:
            while len(word) > size:
                if cur:
                    lines.append(cur)
                    cur = ""
                lines.append(word[:size])
                word = word[size:]
            if not cur:
                cur = word
            elif len(cur) + 1 + len(word) <= size:
                cur += " " + word
            else:
                lines.append(cur)
                cur = word
        lines.append(cur)
        return lines

    limits = (28, 44, 30, width, 44)
    widths = [min(max(len(row[i]) for row in cells), limits[i]) for i in range(5)]
    out = []
    for index, row in enumerate(cells):
        wrapped = [wrap(row[i], widths[i]) for i in range(5)]
        height = max(len(w) for w in wrapped)
        for line in range(height):
            parts = [(wrapped[i][line] if line < len(wrapped[i]) else "").ljust(widths[i]) for i in range(5)]
            out.append(" | ".join(parts).rstrip())
        if index == 0:
            out.append("-+-".join("-" * w for w in widths))
    return out


# --------------------------------------------------------------------------------------
# The site: what every check reads
# --------------------------------------------------------------------------------------
class Site:
    """Variables of every host with the roles' defaults applied, the groups and the hardware.

    ``values`` maps host -> {variable: value} (already templated, defaults applied);
    ``explicit`` maps host -> set of variable names the inventory (or extra vars) sets.
    ``hardware`` maps host -> hardware facts (or None when they could not be read; missing
    when the playbook reads no hardware). ``scope`` are the hosts the playbook acts on.
    Unit tests build a Site from plain data; the action plugin builds one from Ansible's
    variables (``LazySite`` there templates on first access).
    """

    def __init__(self, groups, values, explicit=None, hardware=None, scope=None, playbook="site", options=None):
        self.groups = {k: list(v) for k, v in (groups or {}).items()}
        self.groups.setdefault("all", sorted(values))
        self._values = values
        self._explicit = explicit if explicit is not None else {h: set(v) for h, v in values.items()}
        self.hardware = hardware or {}
        self.scope = list(scope) if scope is not None else list(self.groups["all"])
        self.playbook = playbook
        self.options = options or {}

    # -- hosts and groups ---------------------------------------------------------------
    @property
    def hosts(self):
        return list(self.groups.get("all", []))

    def group(self, name):
        return list(self.groups.get(name, []))

    @property
    def control_plane(self):
        return self.group("labhub_control_plane")

    @property
    def hub_host(self):
        """The host whose variables hold the cluster-wide settings: the first control-plane node."""
        first = self.control_plane + self.hosts
        return first[0] if first else INVENTORY

    # -- variables ----------------------------------------------------------------------
    def get(self, host, name, default=None):
        values = self._values.get(host, {})
        if name in values:
            return values[name]
        return default

    def has(self, host, name):
        """True when the inventory or the extra vars set the variable (not a role default)."""
        return name in self._explicit.get(host, set())

    def explicit_names(self, host):
        """The variables the inventory or the extra vars set on a host."""
        return set(self._explicit.get(host, set()))

    def hub(self, name, default=None):
        """A cluster-wide setting, read on the hub host."""
        return self.get(self.hub_host, name, default)


class HostCheck:
    """The checks of one host: reads its variables and adds rows, remembering which variables
    already have one (concern checkers build on it)."""

    def __init__(self, site, report, host):
        self.site = site
        self.report = report
        self.host = host
        self.flagged = set()

    def get(self, name, default=MISSING):
        return self.site.get(self.host, name, default)


# --------------------------------------------------------------------------------------
# Shared small checks: each returns an error text, or None when the value is fine.
# --------------------------------------------------------------------------------------
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$")
CPU_QUANTITY_RE = re.compile(r"^([0-9]+(\.[0-9]+)?)(m?)$")
MEMORY_QUANTITY_RE = re.compile(r"^([0-9]+(\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E)?$")
URL_RE = re.compile(r"^https?://[^/\s?#@]+(/[^\s?#]*)?$")


def a_type_name(value):
    """The type's name with its article, for messages: "an integer", "a string"."""
    name = type_name(value)
    return ("an " if name[:1] in "aeiou" else "a ") + name


def is_bool(value):
    return isinstance(value, bool)


def truthy(value):
    """A boolean setting as Ansible's ``bool`` filter reads it: a bool as is, else "true", "yes",
    "on" or "1" in any case (surrounding spaces ignored) for true and anything else false."""
    if is_bool(value):
        return value
    return str(value).strip().lower() in ("true", "yes", "on", "1")


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_list(value):
    return isinstance(value, (list, tuple))


def is_str(value):
    return isinstance(value, str)


def _quantity_error(value, regex, what):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return "is %s, not a %s quantity" % (a_type_name(value), what)
    match = regex.match(str(value).strip())
    if not match:
        return "is not a %s quantity" % what
    if float(match.group(1)) <= 0:
        return "must be more than 0"
    return None


def cpu_error(value):
    """None when value is a positive Kubernetes CPU quantity."""
    return _quantity_error(value, CPU_QUANTITY_RE, "CPU")


def memory_error(value):
    """None when value is a positive Kubernetes memory/storage quantity."""
    return _quantity_error(value, MEMORY_QUANTITY_RE, "memory")


def url_error(value, schemes=("http", "https")):
    """None when value is an absolute URL with one of the schemes and a host."""
    if not isinstance(value, str):
        return "is %s, not a URL" % a_type_name(value)
    if not URL_RE.match(value) or value.split("://", 1)[0] not in schemes:
        return "is not an %s URL" % "/".join(schemes)
    return None


def port_error(value, low=1, high=65535):
    if not is_int(value):
        return "is %s, not a port number" % a_type_name(value)
    if value < low or value > high:
        return "is outside %d-%d" % (low, high)
    return None


def abs_path_error(value):
    if not isinstance(value, str) or not value.startswith("/"):
        return "is not an absolute path"
    return None


def label_key_error(key):
    """Kubernetes label/annotation key: [prefix/]name (apimachinery IsQualifiedName)."""
    if not isinstance(key, str) or not key:
        return "label key must be a non-empty string"
    prefix, _sep, name = key.rpartition("/")
    if "/" in key and not prefix:
        return "label key has an empty prefix"
    if prefix and not DNS_SUBDOMAIN_RE.match(prefix):
        return "label key prefix %r is not a DNS subdomain (lower-case letters, digits, '-', '.')" % prefix
    if not re.match(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$", name):
        return ("label key name %r must be 1-63 characters of letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit" % name)
    return None


def label_value_error(value):
    """Kubernetes label value (apimachinery IsValidLabelValue); empty is allowed."""
    if isinstance(value, bool) or value is None or not isinstance(value, (str, int, float)):
        return "label value must be a string"
    text = str(value)
    if text and not re.match(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$", text):
        return ("label value %r must be at most 63 characters of letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit" % text)
    return None
