# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""TEST HARNESS ONLY: the Molecule scenarios' connection to their podman containers.

It is containers.podman's `podman` connection (the one Molecule's podman driver writes into its
inventory) with pipelining: a module runs as one `podman exec -i <container> python3` reading the
module from stdin, the way SSH runs it with pipelining on, instead of `podman mount`, then
`podman exec` for mkdir, chmod, the module and rm, per task and per host. The container's
filesystem is mounted only when a file is copied in or out. Measured (tests/harness: process
accounting of a quiet `make test`): the per-task podman processes were 4.6 CPU-minutes of the
82 the whole suite used.

Each scenario selects it per host (`ansible_connection: labhub_podman` in its host_vars, which
win over the inventory Molecule writes); .config/molecule/config.yml puts this directory on
ANSIBLE_CONNECTION_PLUGINS and turns pipelining on.
"""
from __future__ import annotations

DOCUMENTATION = """
    name: labhub_podman
    short_description: containers.podman.podman with pipelining (Labhub test harness)
    description:
      - Run commands in, and put or fetch files to, an existing podman container; modules are
        pipelined through C(podman exec -i).
    options:
      remote_addr:
        description: The ID or name of the container.
        default: inventory_hostname
        vars:
          - name: ansible_host
          - name: inventory_hostname
          - name: ansible_podman_host
      remote_user:
        description: User to run commands as inside the container.
        ini:
          - section: defaults
            key: remote_user
        env:
          - name: ANSIBLE_REMOTE_USER
        vars:
          - name: ansible_user
      podman_extra_args:
        description: Extra arguments to the podman command line.
        default: ''
        vars:
          - name: ansible_podman_extra_args
        env:
          - name: ANSIBLE_PODMAN_EXTRA_ARGS
      podman_executable:
        description: Executable for the podman command.
        default: podman
        vars:
          - name: ansible_podman_executable
        env:
          - name: ANSIBLE_PODMAN_EXECUTABLE
    extends_documentation_fragment:
      - connection_pipelining
"""

import shlex

from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.connection import ConnectionBase, ensure_connect
from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection


class Connection(PodmanConnection):
    """containers.podman.podman, pipelined; mounts the container only to copy files."""

    transport = "labhub_podman"
    has_pipelining = True

    def _connect(self):
        # No `podman mount` here: running a module needs none (pipelining).
        ConnectionBase._connect(self)  # pylint: disable=protected-access
        self._connected = True

    def _mounted(self):
        if self._mount_point is None:
            PodmanConnection._connect(self)  # pylint: disable=protected-access

    @ensure_connect
    def exec_command(self, cmd, in_data=None, sudoable=False):
        """Run `cmd` in the container; with `in_data` (a pipelined module) on its stdin."""
        ConnectionBase.exec_command(self, cmd, in_data=in_data, sudoable=sudoable)
        args = ["exec", "-i"] if in_data is not None else ["exec"]
        if self.user:
            args.extend(("--user", self.user))
        return self._podman(args, shlex.split(to_native(cmd, errors="surrogate_or_strict")), in_data)

    def put_file(self, in_path, out_path):
        self._mounted()
        super().put_file(in_path, out_path)

    def fetch_file(self, in_path, out_path):
        self._mounted()
        super().fetch_file(in_path, out_path)
