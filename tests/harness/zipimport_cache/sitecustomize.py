# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""A bytecode cache for modules imported from zip archives, for the test suite's Ansible runs.

Every Ansible module runs as an AnsiballZ payload: a zip of the module and the module_utils it
needs, put on sys.path. CPython's zipimport cannot write .pyc files, so it compiles every module it
imports from the zip, on every module run: about 0.13 s of the 0.27 s a `command: true` task costs
here (`python -X importtime`, ansible.module_utils.basic and what it imports), some 5,000 times in
the pytest lane. This does for zip archives what CPython's __pycache__ does for directories: the
compiled code is kept under $LABHUB_ZIPIMPORT_CACHE, keyed by the digest of the source (and the
interpreter's cache tag), and its file names are set to the archive's path on load, as a cached
.pyc gets its path. Nothing else changes: the source in the zip is what runs.

Active only where $LABHUB_ZIPIMPORT_CACHE is set and this directory is on PYTHONPATH
(tests/conftest.py sets both for the processes the tests start); a Python whose zipimport has no
`_compile_source` is left alone.
"""
from __future__ import annotations

import hashlib
import marshal
import os
import sys
import zipimport
from types import CodeType
from typing import Any, Callable

import _imp


def _install(directory: str) -> None:
    original: Callable[[str, bytes], CodeType] | None = getattr(zipimport, "_compile_source", None)
    if original is None:
        return
    compile_source: Callable[[str, bytes], CodeType] = original
    fix_co_filename: Callable[[CodeType, str], None] = getattr(_imp, "_fix_co_filename")  # noqa: B009 - untyped
    directory = os.path.join(directory, sys.implementation.cache_tag or "python")

    def cached_compile_source(pathname: str, source: bytes) -> CodeType:
        path = os.path.join(directory, hashlib.sha256(source).hexdigest())
        try:
            with open(path, "rb") as handle:
                code = marshal.loads(handle.read())
        except (OSError, EOFError, ValueError, TypeError):
            code = compile_source(pathname, source)
            try:
                os.makedirs(directory, exist_ok=True)
                partial = f"{path}.{os.getpid()}"
                with open(partial, "wb") as handle:
                    handle.write(marshal.dumps(code))
                os.replace(partial, path)
            except OSError:
                pass  # a cache that cannot be written is only slower
            return code
        fix_co_filename(code, pathname)
        return code

    module: Any = zipimport
    module._compile_source = cached_compile_source


if os.environ.get("LABHUB_ZIPIMPORT_CACHE"):
    _install(os.environ["LABHUB_ZIPIMPORT_CACHE"])
