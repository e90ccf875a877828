# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""The one way labhub.platform modules run commands.

Modules describe a command as a base argv plus named options; ``CmdRunner``
maps each option value to CLI arguments through a small set of formats and runs
the argv list with ``AnsibleModule.run_command`` (never through a shell).
Modelled on community.general's ``cmd_runner``, reduced to what Labhub needs.

Example::

    runner = CmdRunner(module, [ctr_path], {
        "address": fmt.as_opt_val("--address"),
        "namespace": fmt.as_opt_val("--namespace"),
        "all_platforms": fmt.as_bool("--all-platforms"),
    })
    result = runner.run(["images", "ls", "-q"], address=addr, namespace="k8s.io")
    result.stdout
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json


class CmdError(Exception):
    """A command exited non-zero (or could not be started)."""

    def __init__(self, argv, rc, stdout, stderr):
        self.argv = list(argv)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        detail = (stderr or stdout or "").strip().splitlines()
        reason = detail[-1] if detail else "no output"
        super(CmdError, self).__init__("command '%s' exited %s: %s" % (" ".join(self.argv), rc, reason))


class CmdResult:
    __slots__ = ("argv", "rc", "stdout", "stderr")

    def __init__(self, argv, rc, stdout, stderr):
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    def json(self):
        return json.loads(self.stdout)


class _Formats:
    """Functions that turn an option value into a list of CLI arguments."""

    @staticmethod
    def as_opt_val(flag):
        """``--flag value``; nothing when the value is None or ''."""
        def _f(value):
            if value is None or value == "":
                return []
            return [flag, str(value)]
        return _f

    @staticmethod
    def as_opt_eq_val(flag):
        """``--flag=value``; nothing when the value is None or ''."""
        def _f(value):
            if value is None or value == "":
                return []
            return ["%s=%s" % (flag, value)]
        return _f

    @staticmethod
    def as_bool(flag, false_flag=None):
        """``--flag`` when true; ``false_flag`` (if given) when false; nothing for None."""
        def _f(value):
            if value is None:
                return []
            if value:
                return [flag]
            return [false_flag] if false_flag else []
        return _f

    @staticmethod
    def as_list(flag=None):
        """Each item as its own argument, each preceded by ``flag`` when given."""
        def _f(value):
            out = []
            for item in value or []:
                if flag:
                    out.append(flag)
                out.append(str(item))
            return out
        return _f

    @staticmethod
    def as_positional():
        def _f(value):
            if value is None or value == "":
                return []
            return [str(value)]
        return _f


fmt = _Formats()


class CmdRunner:
    """Runs ``base_argv + options + args`` through ``module.run_command``."""

    def __init__(self, module, base_argv, formats=None, environ_update=None):
        self.module = module
        self.base_argv = [str(a) for a in base_argv]
        self.formats = dict(formats or {})
        self.environ_update = dict(environ_update or {})

    def argv(self, args=(), **options):
        argv = list(self.base_argv)
        for name, value in options.items():
            if name not in self.formats:
                raise KeyError("CmdRunner has no format for option '%s'" % name)
            argv.extend(self.formats[name](value))
        argv.extend(str(a) for a in args)
        return argv

    def run(self, args=(), check=True, data=None, binary_data=False, **options):
        argv = self.argv(args, **options)
        rc, out, err = self.module.run_command(
            argv, check_rc=False, data=data, binary_data=binary_data,
            environ_update=self.environ_update or None,
        )
        if check and rc != 0:
            raise CmdError(argv, rc, out, err)
        return CmdResult(argv, rc, out, err)
