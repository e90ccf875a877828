"""Offline stand-in for ansible-test's pip bootstrap script.

ansible-test bootstraps pip in the empty virtualenvs it creates by downloading
get-pip.py from ci-files.testing.ansible.com, which neither this CI nor an
air-gapped site can reach. It runs that script (cached under
~/.ansible/test/cache/get_pip_<version>.py) with pip-install arguments plus two
get-pip-only flags. This stand-in does the same job with what the Python
already carries: ensurepip's bundled pip wheel, then `pip install` of the
requested packages from the configured package index.
"""
import ensurepip
import os
import subprocess
import sys

GET_PIP_ONLY_FLAGS = {"--no-setuptools", "--no-wheel"}


def main():
    args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY_FLAGS]
    # ensurepip points PIP_CONFIG_FILE at /dev/null in os.environ; the install
    # below must see the site's pip configuration (index, certificates) again.
    environ = dict(os.environ)
    ensurepip.bootstrap(upgrade=True)
    return subprocess.call([sys.executable, "-m", "pip", "install"] + args, env=environ)


if __name__ == "__main__":
    sys.exit(main())
