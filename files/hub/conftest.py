"""Suite-wide pytest setup shared with the collection's suites: a skip or xfail not on
tests/skip-allowlist.txt fails the run (tests/harness/labhub_skips.py)."""
import sys
from pathlib import Path

_HARNESS = Path(__file__).resolve().parents[2] / "tests" / "harness"
if str(_HARNESS) not in sys.path:
    sys.path.insert(0, str(_HARNESS))

pytest_plugins = ["labhub_skips"]
