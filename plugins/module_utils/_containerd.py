# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""containerd access through ``ctr`` (run by CmdRunner), shared by labhub modules.

``Ctr`` lists the images of a namespace with their digests, imports an archive,
removes images, and checks that the GRPC socket accepts connections before any
``ctr`` call (ctr itself waits 10 s on an unreachable socket and then prints a
dial error).
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import socket
import stat

from ansible_collections.labhub.platform.plugins.module_utils._cmd_runner import CmdError, CmdRunner, fmt

DEFAULT_ADDRESS = "/var/snap/microk8s/common/run/containerd.sock"
DEFAULT_NAMESPACE = "k8s.io"

# Options shared by every module that talks to containerd (doc fragment
# labhub.platform.containerd documents them).
CONTAINERD_ARGUMENT_SPEC = dict(
    address=dict(type="str", default=DEFAULT_ADDRESS),
    namespace=dict(type="str", default=DEFAULT_NAMESPACE),
    ctr_path=dict(type="path"),
)


class ContainerdError(Exception):
    """containerd could not be reached or a ctr command failed."""


def socket_path(address):
    """The filesystem path of a unix socket address, or None for other schemes."""
    if address.startswith("unix://"):
        return address[len("unix://"):]
    if "://" in address:
        return None
    return address


def check_socket(address, timeout=3.0):
    """Raise ContainerdError unless the unix socket at ``address`` accepts a connection."""
    path = socket_path(address)
    if path is None:
        return
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ContainerdError("containerd socket '%s' is not reachable: %s" % (path, exc.strerror or exc))
    if not stat.S_ISSOCK(mode):
        raise ContainerdError("containerd socket '%s' is not reachable: not a socket" % path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except (OSError, socket.timeout) as exc:
        raise ContainerdError("containerd socket '%s' is not reachable: %s" % (path, getattr(exc, "strerror", None) or exc))
    finally:
        sock.close()


def resolve_ctr(module, ctr_path):
    """argv prefix for ctr: ``ctr_path``; else ``ctr`` from PATH; else ``microk8s ctr``."""
    if ctr_path:
        if os.path.basename(ctr_path) == "microk8s":
            return [ctr_path, "ctr"]
        return [ctr_path]
    ctr = module.get_bin_path("ctr")
    if ctr:
        return [ctr]
    microk8s = module.get_bin_path("microk8s", opt_dirs=["/snap/bin"])
    if microk8s:
        return [microk8s, "ctr"]
    raise ContainerdError("neither 'ctr' nor 'microk8s' was found in PATH (set ctr_path)")


def parse_images_table(text):
    """Parse ``ctr images ls`` (REF TYPE DIGEST SIZE PLATFORMS LABELS) into {ref: info}."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    images = {}
    if not lines:
        return images
    if not lines[0].startswith("REF"):
        raise ContainerdError("unexpected 'ctr images ls' output: %r" % lines[0][:200])
    for line in lines[1:]:
        fields = line.split(None, 3)
        if len(fields) < 3 or not fields[2].startswith("sha256:"):
            raise ContainerdError("unexpected 'ctr images ls' line: %r" % line[:200])
        rest = fields[3].split() if len(fields) > 3 else []
        # SIZE is "<number> <unit>" (two words); PLATFORMS follows it.
        platforms = rest[2].split(",") if len(rest) > 2 and rest[2] != "-" else []
        images[fields[0]] = {"digest": fields[2], "media_type": fields[1], "platforms": platforms}
    return images


class Ctr:
    """``ctr --address A --namespace N ...`` through CmdRunner."""

    def __init__(self, module, ctr_argv, address, namespace):
        self.module = module
        self.address = address
        self.namespace = namespace
        self.base = list(ctr_argv) + fmt.as_opt_val("--address")(address) + fmt.as_opt_val("--namespace")(namespace)

    def _runner(self, subcommand, formats=None):
        return CmdRunner(self.module, self.base + list(subcommand), formats)

    def check(self):
        check_socket(self.address)

    def list_images(self):
        try:
            result = self._runner(["images", "ls"]).run()
        except CmdError as exc:
            raise ContainerdError(str(exc))
        return parse_images_table(result.stdout)

    def config_digest(self, digest):
        """Config digest of the manifest ``digest`` in the content store, or None."""
        result = self._runner(["content", "get"]).run([digest], check=False)
        if result.rc != 0:
            return None
        try:
            document = json.loads(result.stdout)
        except ValueError:
            return None
        config = document.get("config") if isinstance(document, dict) else None
        return config.get("digest") if isinstance(config, dict) else None

    def import_archive(self, path, all_platforms=False, platform=None, snapshotter=None, base_name=None):
        runner = self._runner(["images", "import"], {
            "all_platforms": fmt.as_bool("--all-platforms"),
            "platform": fmt.as_opt_val("--platform"),
            "snapshotter": fmt.as_opt_val("--snapshotter"),
            "base_name": fmt.as_opt_val("--base-name"),
        })
        try:
            return runner.run([path], all_platforms=all_platforms, platform=platform,
                              snapshotter=snapshotter, base_name=base_name)
        except CmdError as exc:
            raise ContainerdError(_ctr_reason(exc))

    def remove(self, names):
        if not names:
            return None
        try:
            return self._runner(["images", "rm"]).run(list(names))
        except CmdError as exc:
            raise ContainerdError(_ctr_reason(exc))


def _ctr_reason(exc):
    """The last meaningful line ctr printed (its 'ctr: ...' error), else the CmdError text."""
    for text in (exc.stderr, exc.stdout):
        lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ctr: ")]
        if errors:
            return errors[-1][len("ctr: "):]
    return str(exc)
