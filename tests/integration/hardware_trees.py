# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""Materialise the hardware fixture trees (tests/unit/fixtures/hardware) into real trees.

The stored trees encode ``:`` as ``%3A`` and symlinks as ``<name>.symlink`` files (see that
directory's README). ``materialise()`` decodes them into a directory that
labhub.platform.hardware_facts can read with ``root``. Used by the preflight tests
(tests/integration/test_preflight.py) and the preflight Molecule scenario:

    python tests/integration/hardware_trees.py DEST [TREE ...]
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import sys

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "unit", "fixtures", "hardware")


def trees():
    """Names of the stored fixture trees."""
    return sorted(name for name in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, name)))


def materialise(tree, dest):
    """Decode fixture ``tree`` into ``dest`` (created); return ``dest``."""
    src_top = os.path.join(FIXTURES, tree)
    if not os.path.isdir(src_top):
        raise ValueError("no hardware fixture tree %r under %s" % (tree, FIXTURES))
    for dirpath, dirnames, filenames in os.walk(src_top):
        dirnames.sort()
        rel = os.path.relpath(dirpath, src_top)
        out_dir = dest if rel == "." else os.path.join(dest, rel.replace("%3A", ":"))
        if not os.path.isdir(out_dir):
            os.makedirs(out_dir)
        for name in sorted(filenames):
            src = os.path.join(dirpath, name)
            out_name = name.replace("%3A", ":")
            if out_name.endswith(".symlink"):
                with open(src) as handle:
                    target = handle.read().strip()
                link = os.path.join(out_dir, out_name[:-len(".symlink")])
                if os.path.lexists(link):
                    os.unlink(link)
                os.symlink(target, link)
            else:
                shutil.copy2(src, os.path.join(out_dir, out_name))
    return dest


def main(argv):
    if not argv:
        sys.stderr.write("usage: hardware_trees.py DEST [TREE ...]\n")
        return 2
    dest = argv[0]
    for tree in argv[1:] or trees():
        print(materialise(tree, os.path.join(dest, tree)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
