# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: secret_file
author:
  - Labhub engineers (@labhub)
version_added: 0.1.0
short_description: A secret generated once into a 0600 file, its missing directories created 0700
description:
  - M(ansible.builtin.password) with private directories. The secret is read from the file on the
    controller, or generated (random characters) and written there (mode 0600) on first use, so
    later runs read the same value.
  - Unlike C(ansible.builtin.password), which creates missing parent directories with the
    process umask (typically 0755), every missing directory of the path is created with mode 0700
    first. Labhub keeps generated secrets under C(<inventory>/.credentials/); whichever role or
    check evaluates a generated secret first, that directory ends up private.
  - Existing directories are left as they are (the roles set C(.credentials) to 0700 with
    M(ansible.builtin.file) where they own it).
options:
  _terms:
    description: Path of the file that holds the secret.
    required: true
    type: list
    elements: str
  length:
    description: Length of a generated secret.
    type: int
    default: 20
  chars:
    description: Character sets of a generated secret (as for C(ansible.builtin.password)).
    type: list
    elements: str
    default: ['ascii_letters', 'digits', ".,:-_"]
  encrypt:
    description: Return the secret hashed with this algorithm (as for C(ansible.builtin.password)).
    type: str
  ident:
    description: Hash variant for O(encrypt) (as for C(ansible.builtin.password)).
    type: str
  seed:
    description: Seed of the random generator (as for C(ansible.builtin.password)); for tests only.
    type: str
"""

EXAMPLES = r"""
- name: The hub cookie secret, generated once into the inventory's private credentials directory
  ansible.builtin.set_fact:
    cookie_secret: >-
      {{ lookup('labhub.platform.secret_file', inventory_dir ~ '/.credentials/jupyterhub/cookie_secret',
                chars=['digits', 'abcdef'], length=64) }}
  no_log: true
"""

RETURN = r"""
_raw:
  description: The secret (one per term).
  type: list
  elements: str
"""

import os

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible.plugins.lookup.password import LookupModule as PasswordLookup


def makedirs_private(path):
    """Create every missing directory of ``path`` (bytes) with mode 0700, umask notwithstanding."""
    missing = []
    current = path
    while current and not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
            continue
        os.chmod(directory, 0o700)


class LookupModule(PasswordLookup):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        for term in terms:
            relpath = self._parse_parameters(term)[0]
            b_dir = os.path.dirname(to_bytes(self._loader.path_dwim(relpath), errors="surrogate_or_strict"))
            if b_dir == b"/dev":
                continue
            try:
                makedirs_private(b_dir)
            except OSError as exc:
                raise AnsibleError("secret_file: cannot create the directory of %s: %s" % (relpath, to_native(exc)))
        return super(LookupModule, self).run(terms, variables=variables, **kwargs)
