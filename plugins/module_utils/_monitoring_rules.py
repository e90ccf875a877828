# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""Prometheus rules of role monitoring: recording rules the dashboards read, and the alerts.

:func:`rules` builds the rule file (``{"groups": [...]}``) from the alert thresholds (inventory
variables ``monitoring_alert_*``, :data:`THRESHOLDS` gives each one's default and kind) and the
hub's namespace. :func:`check_thresholds` validates them (the one validation pass calls it), so a
bad threshold is named before anything changes.

What the expressions read, at the versions Labhub pins:

- the DCGM exporter of the GPU Operator v25.10.1 (dcgm-exporter 4.4.2-4.7.0,
  ``etc/default-counters.csv``): ``DCGM_FI_DEV_GPU_UTIL`` (%), ``DCGM_FI_PROF_GR_ENGINE_ACTIVE``
  (ratio; the busy measure of a MIG instance, which has no GPU_UTIL), ``DCGM_FI_DEV_FB_USED`` /
  ``_FB_FREE`` (MiB), ``DCGM_FI_DEV_POWER_USAGE`` (W), ``DCGM_FI_DEV_XID_ERRORS`` (the last XID),
  ``DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS`` and ``DCGM_FI_DEV_ROW_REMAP_FAILURE`` (uncorrectable
  memory (ECC) errors on GPUs that remap rows; ``DCGM_FI_DEV_ECC_DBE_VOL_TOTAL`` where a site's
  counters enable it). Every sample carries ``gpu``, ``UUID``, ``Hostname`` and, while a pod holds
  the GPU, ``namespace``/``pod``/``container`` (internal/pkg/rendermetrics/render_metrics.go);
- JupyterHub 5 (``jupyterhub/metrics.py``): ``jupyterhub_server_spawn_duration_seconds`` with
  ``status`` success, failure, already-pending, throttled, too-many-users;
- kube-state-metrics v2.16.0: ``kube_node_status_condition``, ``kube_node_status_capacity``
  (resource ``nvidia_com_gpu``), ``kube_deployment_status_replicas_available``;
- the kubelet's ``kubelet_volume_stats_*`` and node exporter's ``node_filesystem_*``;
- the portal's own ``/metrics`` (portal/src/labhub_portal/metrics.py).
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

DURATION_PART_RE = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
DURATION_RE = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}

#: The portal's scrape job (role monitoring's scrape configuration) and the hub's.
PORTAL_JOB = "labhub-portal"
HUB_JOB = "jupyterhub"

#: threshold -> (default, kind, what it means). Kinds: duration (a Prometheus duration of at least
#: 1m), percent (0-100), ratio (0-1 exclusive of 0), count (a whole number >= 1). The inventory
#: variable is ``monitoring_alert_<threshold>``.
THRESHOLDS = {
    "gpu_idle_percent": (5, "percent", "a user server's GPUs count as idle at or below this utilisation (%)"),
    "gpu_idle_for": ("2h", "duration", "how long a user server's GPUs may stay idle before LabhubGpuHeldIdle"),
    "node_not_ready_for": ("5m", "duration", "how long a GPU node may be NotReady before LabhubGpuNodeNotReady"),
    "hub_down_for": ("5m", "duration", "how long the hub or proxy may be down before LabhubHubDown/LabhubProxyDown"),
    "spawn_failure_ratio": (0.2, "ratio", "share of spawns that failed in the window before LabhubSpawnFailures"),
    "spawn_failure_min": (3, "count", "failed spawns in the window needed before LabhubSpawnFailures"),
    "spawn_failure_window": ("30m", "duration", "the window spawns are counted over"),
    "storage_free_percent": (10, "percent", "a volume or node filesystem with less free space (%) is nearly full"),
    "recorder_stale_after": ("5m", "duration", "age of the portal recorder's last good cycle before LabhubPortalRecorderStale"),
    "report_sync_failing_for": ("2h", "duration", "time without a good report sync (and with failures) before LabhubReportSyncFailing"),
}


def seconds(duration):
    """A Prometheus duration (e.g. 1h30m) in seconds."""
    if not isinstance(duration, str) or not DURATION_RE.match(duration):
        raise ValueError("not a Prometheus duration: %r" % (duration,))
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in DURATION_PART_RE.findall(duration))


def thresholds_from_vars(variables):
    """threshold -> value, from ``monitoring_alert_<threshold>`` variables (defaults where unset)."""
    return dict((name, variables.get("monitoring_alert_" + name, spec[0])) for name, spec in THRESHOLDS.items())


def check_thresholds(values):
    """[(variable, problem, expected)] for every threshold that is not of its kind."""
    problems = []
    for name, (default, kind, _meaning) in THRESHOLDS.items():
        value, var = values.get(name, default), "monitoring_alert_" + name
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind == "duration":
            if not (isinstance(value, str) and DURATION_RE.match(value)) or seconds(value) < 60:
                problems.append((var, "is not a Prometheus duration of at least 1m", "e.g. 5m, 2h, 1d"))
        elif kind == "percent" and not (numeric and 0 <= value <= 100):
            problems.append((var, "is not a percentage", "a number from 0 to 100"))
        elif kind == "ratio" and not (numeric and 0 < value <= 1):
            problems.append((var, "is not a ratio", "a number above 0, at most 1 (0.2 = 20 %)"))
        elif kind == "count" and not (numeric and value == int(value) and value >= 1):
            problems.append((var, "is not a whole number of at least 1", "e.g. 3"))
    return problems


def number(value):
    """A threshold as PromQL text: 5 -> '5', 0.2 -> '0.2'."""
    return ("%d" % value) if float(value) == int(value) else repr(float(value))


def _alert(name, expr, for_, severity, summary, description):
    rule = {"alert": name, "expr": expr, "labels": {"severity": severity},
            "annotations": {"summary": summary, "description": description}}
    if for_:
        rule["for"] = for_
    return rule


def recording_rules(hub_namespace):
    """What the dashboards and the alerts share: how busy each GPU (or MIG instance) is, in %,
    with the pod that holds it; which user servers hold GPUs."""
    servers = 'namespace="%s",pod!=""' % hub_namespace
    return {"name": "labhub-gpu.records", "rules": [
        # a whole GPU reports GPU_UTIL; a MIG instance does not and reports its graphics engine's activity
        {"record": "labhub:gpu_busy:percent",
         "expr": 'DCGM_FI_DEV_GPU_UTIL or (DCGM_FI_PROF_GR_ENGINE_ACTIVE{GPU_I_ID!=""} * 100)'},
        {"record": "labhub:server_gpu_busy:max_percent",
         "expr": "max by (namespace, pod, Hostname) (labhub:gpu_busy:percent{%s})" % servers},
        {"record": "labhub:server_gpus:count",
         "expr": "count by (namespace, pod, Hostname) (labhub:gpu_busy:percent{%s})" % servers},
    ]}


def alert_rules(t, hub_namespace):
    """The alerting rules, from the thresholds ``t`` (see :data:`THRESHOLDS`)."""
    idle, free = number(t["gpu_idle_percent"]), number(t["storage_free_percent"])
    window, ns = t["spawn_failure_window"], hub_namespace
    spawns = 'jupyterhub_server_spawn_duration_seconds_count{job="%s"%s}'
    # a start that failed, was throttled or refused for too many users: the user got no server
    failed = "sum(increase(%s[%s]))" % (spawns % (HUB_JOB, ',status!~"success|already-pending"'), window)
    # already-pending is a repeated request for a start under way, not a start
    every = "sum(increase(%s[%s]))" % (spawns % (HUB_JOB, ',status!="already-pending"'), window)
    fs = 'fstype!~"tmpfs|overlay|squashfs|nsfs|ramfs|devtmpfs",mountpoint!~"/var/lib/kubelet/.*|/run.*|/snap/.*"'
    return {"name": "labhub.alerts", "rules": [
        _alert("LabhubGpuNodeNotReady",
               'kube_node_status_condition{condition="Ready",status="true"} == 0'
               ' and on (node) kube_node_status_capacity{resource="nvidia_com_gpu"} > 0',
               t["node_not_ready_for"], "critical", "GPU node {{ $labels.node }} is not Ready",
               "Node {{ $labels.node }} has GPUs and has not been Ready for %s: its servers are unreachable "
               "and no new GPU server can start on it." % t["node_not_ready_for"]),
        _alert("LabhubGpuXidError", "DCGM_FI_DEV_XID_ERRORS != 0", "", "critical",
               "XID {{ $value }} on GPU {{ $labels.gpu }} of {{ $labels.Hostname }}",
               "The driver reported XID {{ $value }} on GPU {{ $labels.gpu }} ({{ $labels.UUID }}) of node "
               "{{ $labels.Hostname }}; the pod holding it: {{ $labels.namespace }}/{{ $labels.pod }}. Look the XID "
               "up in NVIDIA's XID catalogue; many need a GPU reset or a reboot."),
        _alert("LabhubGpuMemoryError",
               "increase(DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS[10m]) > 0 or DCGM_FI_DEV_ROW_REMAP_FAILURE != 0"
               " or increase(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL[10m]) > 0", "", "critical",
               "Uncorrectable memory (ECC) error on GPU {{ $labels.gpu }} of {{ $labels.Hostname }}",
               "GPU {{ $labels.gpu }} ({{ $labels.UUID }}) of node {{ $labels.Hostname }} had an uncorrectable "
               "memory error (a remapped row, a failed remap or a double-bit ECC error): drain the node and "
               "reset the GPU."),
        _alert("LabhubGpuHeldIdle", "labhub:server_gpu_busy:max_percent <= %s" % idle, t["gpu_idle_for"], "warning",
               "{{ $labels.pod }} holds GPUs idle",
               "The user server {{ $labels.pod }} on {{ $labels.Hostname }} holds GPUs whose busiest has been at "
               "or below %s %% for %s; other users could use them." % (idle, t["gpu_idle_for"])),
        _alert("LabhubHubDown",
               'up{job="%s"} == 0 or kube_deployment_status_replicas_available{namespace="%s",deployment="hub"} < 1'
               % (HUB_JOB, ns), t["hub_down_for"], "critical", "JupyterHub is down",
               "The hub in namespace %s has not answered for %s: nobody can log in or start a server."
               % (ns, t["hub_down_for"])),
        _alert("LabhubProxyDown",
               'kube_deployment_status_replicas_available{namespace="%s",deployment="proxy"} < 1' % ns,
               t["hub_down_for"], "critical", "JupyterHub's proxy is down",
               "The proxy in namespace %s has had no available pod for %s: no user reaches the hub or their "
               "server." % (ns, t["hub_down_for"])),
        _alert("LabhubSpawnFailures",
               "(%s / %s > %s) and (%s >= %s)"
               % (failed, every, number(t["spawn_failure_ratio"]), failed, number(t["spawn_failure_min"])),
               "", "warning", "Servers fail to start",
               "{{ $value | humanizePercentage }} of the server starts of the last %s failed or were refused "
               "(at least %s): look at the hub's log and the pods' events." % (window, number(t["spawn_failure_min"]))),
        _alert("LabhubVolumeNearlyFull",
               "kubelet_volume_stats_available_bytes / kubelet_volume_stats_capacity_bytes * 100 < %s" % free,
               "15m", "warning", "Volume {{ $labels.namespace }}/{{ $labels.persistentvolumeclaim }} is nearly full",
               "Less than %s %% of {{ $labels.namespace }}/{{ $labels.persistentvolumeclaim }} is free." % free),
        _alert("LabhubNodeDiskNearlyFull",
               "node_filesystem_avail_bytes{%s} / node_filesystem_size_bytes{%s} * 100 < %s" % (fs, fs, free),
               "15m", "warning", "{{ $labels.mountpoint }} on {{ $labels.instance }} is nearly full",
               "Less than %s %% of {{ $labels.mountpoint }} ({{ $labels.device }}) on {{ $labels.instance }} "
               "is free." % free),
        _alert("LabhubPortalRecorderStale",
               'time() - portal_recorder_last_success_timestamp_seconds{job="%s"} > %d or up{job="%s"} == 0'
               % (PORTAL_JOB, seconds(t["recorder_stale_after"]), PORTAL_JOB),
               "1m", "critical", "The portal records no usage",
               "The portal's recorder has had no good cycle for more than %s (or the portal does not answer): "
               "usage and cost are not being recorded." % t["recorder_stale_after"]),
        _alert("LabhubReportSyncFailing",
               '(time() - portal_report_sync_last_success_timestamp_seconds{job="%s"} > %d)'
               ' and on (job, instance) increase(portal_report_sync_runs_total{job="%s",result="error"}[%s]) > 0'
               % (PORTAL_JOB, seconds(t["report_sync_failing_for"]), PORTAL_JOB, t["report_sync_failing_for"]),
               "", "warning", "The MySQL report is not being updated",
               "The portal's report sync has failed and not succeeded for %s: the MySQL report table is stale."
               % t["report_sync_failing_for"]),
    ]}


def rules(thresholds, hub_namespace):
    """The rule file: recording rules, then the alerts."""
    values = dict((name, spec[0]) for name, spec in THRESHOLDS.items())
    values.update(thresholds or {})
    return {"groups": [recording_rules(hub_namespace), alert_rules(values, hub_namespace)]}
