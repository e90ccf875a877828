# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by the labhub.platform modules that talk to containerd through ctr."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):  # pylint: disable=too-few-public-methods
    DOCUMENTATION = r"""
options:
  address:
    description:
      - Address of containerd's GRPC socket, passed to ctr as C(--address).
      - The default is MicroK8s' containerd socket.
      - For a unix socket (a path or C(unix://path)) the module first checks that the
        socket accepts connections, so an unreachable containerd fails at once instead of
        after ctr's 10 second dial timeout.
    type: str
    default: /var/snap/microk8s/common/run/containerd.sock
  namespace:
    description:
      - containerd namespace, passed to ctr as C(--namespace).
      - Kubernetes (and so MicroK8s) only sees images in C(k8s.io).
    type: str
    default: k8s.io
  ctr_path:
    description:
      - Path of the ctr binary.
      - When the path's file name is C(microk8s), the module runs C(<ctr_path> ctr).
      - When not set, C(ctr) is looked up in E(PATH); when there is none, C(microk8s ctr)
        (from E(PATH) or C(/snap/bin)) is used. The module fails when neither exists.
    type: path
requirements:
  - ctr (containerd 1.6 or later), or MicroK8s' C(microk8s ctr)
"""
