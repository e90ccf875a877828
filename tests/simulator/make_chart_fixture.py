# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""Write a LABELLED chart fixture `<name>-<version>.tgz` for the SIMULATED helm (tests only).

The archive holds `<name>/Chart.yaml` and `<name>/values.yaml` (copied from a real chart's files
when given, e.g. z2jh 4.4.0's values.yaml from the shared reference) and a `templates/NOTICE`
saying it is a test fixture: it has no templates, the simulated helm takes the chart's objects
from tests/simulator/sim_charts/<name>.py.

    make_chart_fixture.py DEST_DIR NAME VERSION [--app-version V] [--values FILE] [--chart-yaml FILE]
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile

NOTICE = ("LABHUB TEST FIXTURE: not a usable Helm chart. It carries Chart.yaml and values.yaml only;\n"
          "the simulated helm (tests/simulator/labhub_helm.py) models its objects in sim_charts/.\n")


def _add(tar, name, text):
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def make(dest, name, version, app_version=None, values_text=None, chart_yaml_text=None):
    """Write DEST/<name>-<version>.tgz and return its path. Deterministic bytes for same inputs."""
    if chart_yaml_text is None:
        chart_yaml_text = "apiVersion: v2\nname: %s\nversion: %s\n" % (name, version)
        if app_version:
            chart_yaml_text += "appVersion: \"%s\"\n" % app_version
        chart_yaml_text += "description: LABHUB TEST FIXTURE of the %s chart\ntype: application\n" % name
    else:
        # the real Chart.yaml with the fixture's name/version (chartpress writes placeholders there)
        lines = []
        for line in chart_yaml_text.splitlines():
            if line.startswith("version:"):
                line = "version: %s" % version
            elif line.startswith("name:"):
                line = "name: %s" % name
            elif line.startswith("appVersion:") and app_version:
                line = "appVersion: \"%s\"" % app_version
            lines.append(line)
        chart_yaml_text = "\n".join(lines) + "\n"
    os.makedirs(dest, exist_ok=True)
    path = os.path.join(dest, "%s-%s.tgz" % (name, version))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add(tar, "%s/Chart.yaml" % name, chart_yaml_text)
        _add(tar, "%s/values.yaml" % name, values_text if values_text is not None else "{}\n")
        _add(tar, "%s/templates/NOTICE" % name, NOTICE)
    import gzip  # pylint: disable=import-outside-toplevel
    with open(path, "wb") as handle:
        with gzip.GzipFile(fileobj=handle, mode="wb", mtime=0) as gz:
            gz.write(buf.getvalue())
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest")
    parser.add_argument("name")
    parser.add_argument("version")
    parser.add_argument("--app-version")
    parser.add_argument("--values", help="values.yaml to embed")
    parser.add_argument("--chart-yaml", help="a real Chart.yaml to embed (name/version replaced)")
    args = parser.parse_args(argv)
    values = open(args.values).read() if args.values else None
    chart_yaml = open(args.chart_yaml).read() if args.chart_yaml else None
    print(make(args.dest, args.name, args.version, args.app_version, values, chart_yaml))
    return 0


if __name__ == "__main__":
    sys.exit(main())
