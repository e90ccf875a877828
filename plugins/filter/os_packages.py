# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter labhub.platform.node_os_packages: the OS packages every cluster node gets from the
bundle (site.yml, add_node.yml). The decision lives in plugins/module_utils/_os_packages.py."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.labhub.platform.plugins.module_utils import _os_packages


def node_os_packages(storage_kind):
    if not isinstance(storage_kind, str):
        raise AnsibleFilterError("node_os_packages: input must be jupyterhub_storage_kind (a string), got %s"
                                 % type(storage_kind).__name__)
    return _os_packages.node_packages(storage_kind)


class FilterModule(object):
    def filters(self):
        return {"node_os_packages": node_os_packages}
