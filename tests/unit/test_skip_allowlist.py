"""tests/harness/labhub_skips.py: a skip or xfail not on the allow-list fails the run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SUITE = '''
import pytest

def test_runs():
    pass

@pytest.mark.skip(reason="not here")
def test_skipped():
    pass

@pytest.mark.parametrize("n", [1, 2])
def test_param(n):
    if n == 2:
        pytest.skip("two is skipped")

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False
'''


def run(tmp_path: Path, allowlist: str, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_suite.py").write_text(SUITE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "allow.txt").write_text(allowlist)
    env = dict(os.environ, PYTHONPATH=str(REPO / "tests" / "harness"),
               LABHUB_SKIP_ALLOWLIST=str(tmp_path / "allow.txt"))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "labhub_skips", "-p", "no:cacheprovider",
                           "-q", *args, str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=False)


def test_skips_and_xfails_not_allowed_fail_the_run(tmp_path):
    proc = run(tmp_path, "test_suite.py::test_skipped  # intended\n")
    assert proc.returncode == 1, proc.stdout
    assert "test_suite.py::test_param[2]  # two is skipped" in proc.stdout
    assert "test_suite.py::test_xfail  # xfail: known" in proc.stdout
    assert "test_suite.py::test_skipped  #" not in proc.stdout.split("skips not on the allow-list")[1]


def test_all_allowed_passes(tmp_path):
    proc = run(tmp_path, "# comment\n\ntest_suite.py::test_skipped  # intended\n"
                         "test_suite.py::test_param[[]2]  # not a character class: matches nothing\n"
                         "test_suite.py::test_param[2]  # literal brackets\n"
                         "*::test_xfail  # glob\n")
    assert proc.returncode == 0, proc.stdout
    assert "3 skip(s)/xfail(s), all on the allow-list" in proc.stdout


def test_entry_without_reason_is_refused(tmp_path):
    proc = run(tmp_path, "test_suite.py::test_skipped\n")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "the reason is required" in proc.stderr


def test_under_xdist(tmp_path):
    proc = run(tmp_path, "test_suite.py::test_skipped  # intended\n", "-n", "2")
    assert proc.returncode == 1, proc.stdout
    assert "test_suite.py::test_param[2]  # two is skipped" in proc.stdout
