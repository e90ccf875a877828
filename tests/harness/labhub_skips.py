# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pytest plugin: a skipped or xfail-marked test fails the run unless it is on the allow-list.

Loaded by the three suites (tests/conftest.py, portal/conftest.py, files/hub/conftest.py) with
``pytest_plugins = ["labhub_skips"]`` after putting tests/harness on sys.path.

The allow-list, tests/skip-allowlist.txt (override: LABHUB_SKIP_ALLOWLIST), has one entry a line:

    <node id glob>  # <reason>

Node ids are written from the repository root (``portal/tests/ui/test_browser.py::test_x``,
``tests/unit/...``, ``files/hub/tests/...``) whichever suite runs them; ``*`` matches any text,
every other character (``[`` of parametrised ids included) matches itself. The reason is
required. Skips at collection time (``importorskip``, module-level ``skip``) are matched by their
module's id. xfailed and xpassed tests count as skips. At the end of the run every skip that no
entry allows is listed with its reason and the exit status is 1.
"""
import os
import re

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_ALLOWLIST = os.path.join(REPO, "tests", "skip-allowlist.txt")


def read_allowlist(path):
    """[(glob, compiled regex, reason)] from the allow-list file; a line without a reason is an error."""
    entries = []
    if not os.path.exists(path):
        return entries
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            glob, reason = (part.strip() for part in text.split("#", 1)) if "#" in text else (text, "")
            if not glob or not reason:
                raise pytest.UsageError(
                    "%s:%d: an entry is '<node id glob>  # <reason>', the reason is required: %r"
                    % (path, number, text))
            pattern = re.compile(".*".join(re.escape(part) for part in glob.split("*")) + r"\Z")
            entries.append((glob, pattern, reason))
    return entries


def _reason(report):
    """The skip or xfail reason pytest recorded in the report."""
    if hasattr(report, "wasxfail"):
        return "xfail: %s" % (report.wasxfail or "no reason given")
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason


def _shown(path):
    """The allow-list path as the reader finds it: from the repository root when it is inside."""
    relative = os.path.relpath(path, REPO)
    return path if relative.startswith("..") else relative


class SkipAllowlist:
    """Collects skips and xfails, compares them with the allow-list at the end of the session."""

    def __init__(self, config, path):
        self.path = path
        self.entries = read_allowlist(path)
        rootdir = str(config.rootpath)
        prefix = os.path.relpath(rootdir, REPO).replace(os.sep, "/")
        # a suite outside the repository (the plugin's own tests) keeps pytest's node ids
        self.prefix = "" if prefix == "." or prefix.startswith("..") else prefix + "/"
        self.seen = {}      # repo-relative node id -> reason
        self.refused = {}   # the subset no entry allows

    def record(self, report):
        """Record a skipped, xfailed or xpassed test (or collected module)."""
        xfail = hasattr(report, "wasxfail")
        if not (report.skipped or (xfail and report.passed)):
            return
        nodeid = self.prefix + report.nodeid
        if nodeid in self.seen:
            return
        reason = _reason(report)
        self.seen[nodeid] = reason
        if not any(entry[1].match(nodeid) for entry in self.entries):
            self.refused[nodeid] = reason

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report):
        self.record(report)

    @pytest.hookimpl
    def pytest_collectreport(self, report):
        self.record(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session):
        if self.refused and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter):
        if not self.refused:
            if self.seen:
                terminalreporter.write_line(
                    "labhub: %d skip(s)/xfail(s), all on the allow-list %s"
                    % (len(self.seen), _shown(self.path)))
            return
        terminalreporter.section("skips not on the allow-list", sep="=", red=True, bold=True)
        for nodeid, reason in sorted(self.refused.items()):
            terminalreporter.write_line("%s  # %s" % (nodeid, reason))
        terminalreporter.write_line(
            "labhub: %d skip(s)/xfail(s) not on %s: make the test run (install what it needs), or add "
            "'<node id glob>  # <reason>' if the skip is intended; the run fails"
            % (len(self.refused), _shown(self.path)), red=True)


def pytest_configure(config):
    """Register the collector on the process that reports (not on xdist workers)."""
    if hasattr(config, "workerinput"):
        return
    path = os.environ.get("LABHUB_SKIP_ALLOWLIST", DEFAULT_ALLOWLIST)
    config.pluginmanager.register(SkipAllowlist(config, path), "labhub-skip-allowlist")
