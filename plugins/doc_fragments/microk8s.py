# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by the labhub.platform modules that drive the microk8s CLI
(their argument spec is module_utils/_microk8s.MICROK8S_COMMON_ARGS)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):  # pylint: disable=too-few-public-methods
    DOCUMENTATION = r"""
options:
  microk8s_path:
    description: The C(microk8s) command; looked up in C(PATH) and C(/snap/bin).
    type: path
    default: microk8s
"""
