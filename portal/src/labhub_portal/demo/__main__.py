"""``python -m labhub_portal.demo [--port N ...]`` = ``labhub-portal demo``."""

import sys

from .runner import main

sys.exit(main(sys.argv[1:]))
