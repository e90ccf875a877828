# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""Chart models of the SIMULATED helm (tests/simulator): one file per chart, see README.md."""
