"""Labhub's Grafana dashboards, as code (issue 14 item 2).

Built with Grafana's own SDK (``grafana-foundation-sdk`` from PyPI, pinned in
tests/requirements.in) and written as JSON next to this file. Role monitoring provisions the JSON
files into Grafana (ConfigMap ``grafana-dashboards``) and sets the two constants from the
inventory: ``hub_namespace`` (jupyterhub_namespace) and ``idle_percent``
(monitoring_alert_gpu_idle_percent).

    python files/dashboards/generate.py          # rewrite the JSON files
    python files/dashboards/generate.py --check  # exit 1 naming each file that differs (drift)

tests/unit/test_dashboards.py runs the drift check; tests/kube/test_monitoring_prometheus.py runs
every query of every dashboard against a real Prometheus and requires data from each.

The queries read the recording rules of plugins/module_utils/_monitoring_rules.py
(``labhub:gpu_busy:percent``: a whole GPU's DCGM_FI_DEV_GPU_UTIL, or a MIG instance's graphics
engine activity in %), the DCGM exporter (dcgm-exporter 4.4.2-4.7.0 default counters; the
``Hostname`` label is the node), JupyterHub 5's /hub/metrics, kube-state-metrics v2.16.0, node
exporter and the portal's /metrics (portal/src/labhub_portal/metrics.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import common, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import DataSourceRef, StackingMode
from grafana_foundation_sdk.models.dashboard import DashboardCursorSync, VariableRefresh, VariableSort
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

HERE = Path(__file__).resolve().parent
#: The Prometheus data source role monitoring provisions (_monitoring.grafana_datasources).
PROMETHEUS = DataSourceRef(type_val="prometheus", uid="labhub-prometheus")
MIB = "* 1048576"
SERVERS = 'namespace="$hub_namespace",pod!=""'

Panel = timeseries.Panel | stat.Panel | table.Panel


def query(expr: str, legend: str = "", instant: bool = False, ref: str = "A") -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).datasource(PROMETHEUS).ref_id(ref)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant()
    return q


def series(title: str, unit: str, *queries: prometheus.Dataquery, description: str = "", span: int = 12,
           stacked: bool = False) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).unit(unit).datasource(PROMETHEUS).span(span).height(8)
             .fill_opacity(10).line_width(1))
    if description:
        panel = panel.description(description)
    if stacked:
        panel = panel.stacking(common.StackingConfig().mode(StackingMode.NORMAL))
    if unit == "percent":
        panel = panel.min(0).max(100)
    elif unit not in ("s",):
        panel = panel.min(0)
    for q in queries:
        panel = panel.with_target(q)
    return panel


def single(title: str, unit: str, expr: str, description: str = "", span: int = 4) -> stat.Panel:
    panel = stat.Panel().title(title).unit(unit).datasource(PROMETHEUS).span(span).height(4)
    if description:
        panel = panel.description(description)
    return panel.with_target(query(expr, instant=True))


def listing(title: str, expr: str, description: str, span: int = 12) -> table.Panel:
    target = query(expr, instant=True).format(PromQueryFormat.TABLE)
    return table.Panel().title(title).description(description).datasource(PROMETHEUS).span(span).height(8).with_target(target)


def base(uid: str, title: str, description: str) -> dash.Dashboard:
    return (dash.Dashboard(title).uid(uid).description(description).tags(["labhub"]).readonly()
            .time("now-6h", "now").refresh("1m").timezone("browser").tooltip(DashboardCursorSync.CROSSHAIR)
            .with_variable(dash.ConstantVariable("hub_namespace").value("jhub")
                           .description("The hub's namespace (set by role monitoring from jupyterhub_namespace)")))


def node_variable() -> dash.QueryVariable:
    return (dash.QueryVariable("node").label("Node").datasource(PROMETHEUS)
            .query("label_values(DCGM_FI_DEV_GPU_UTIL, Hostname)").multi(True).include_all(True)
            .all_value(".*").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC))


def gpus() -> dash.Dashboard:
    node = 'Hostname=~"$node"'
    d = (base("labhub-gpus", "Labhub / GPUs",
              "GPU utilisation, memory and power per node, per GPU and per user server, and the GPUs user "
              "servers hold idle (DCGM exporter of the GPU Operator).")
         .with_variable(dash.ConstantVariable("idle_percent").value("5")
                        .description("At or below this utilisation a GPU is idle (monitoring_alert_gpu_idle_percent)"))
         .with_variable(node_variable()))
    d = (d.with_row(dash.Row("Allocated vs busy"))
         .with_panel(series(
             "GPUs held by user servers: busy and idle", "none",
             query("count(labhub:gpu_busy:percent{%s})" % SERVERS, "held by servers"),
             query("count(labhub:gpu_busy:percent{%s} > $idle_percent)" % SERVERS, "busy", ref="B"),
             query("count(labhub:gpu_busy:percent{%s} <= $idle_percent)" % SERVERS, "held idle", ref="C"),
             query("count(labhub:gpu_busy:percent)", "all GPUs and MIG instances", ref="D"),
             description="GPUs (and MIG instances) held by user servers over time, split into busy and idle "
                         "(at or below $idle_percent %). The gap between held and busy is capacity held idle.",
             span=16))
         .with_panel(listing(
             "Servers holding idle GPUs", "labhub:server_gpu_busy:max_percent <= $idle_percent",
             "User servers whose busiest GPU is at or below $idle_percent % now (LabhubGpuHeldIdle fires when "
             "this lasts monitoring_alert_gpu_idle_for).", span=8)))
    d = (d.with_row(dash.Row("Per node"))
         .with_panel(series("GPU utilisation per node", "percent",
                            query("avg by (Hostname) (labhub:gpu_busy:percent{%s})" % node, "{{Hostname}}"), span=8))
         .with_panel(series("GPU memory used per node", "bytes",
                            query("sum by (Hostname) (DCGM_FI_DEV_FB_USED{%s}) %s" % (node, MIB), "{{Hostname}}"),
                            span=8))
         .with_panel(series("GPU power per node", "watt",
                            query("sum by (Hostname) (DCGM_FI_DEV_POWER_USAGE{%s})" % node, "{{Hostname}}"), span=8)))
    d = (d.with_row(dash.Row("Per GPU"))
         .with_panel(series("Utilisation per GPU and MIG instance", "percent",
                            query("labhub:gpu_busy:percent{%s}" % node, "{{Hostname}} GPU {{gpu}} {{GPU_I_PROFILE}}"),
                            span=8))
         .with_panel(series("Memory used per GPU", "percent",
                            query("DCGM_FI_DEV_FB_USED{%s} / (DCGM_FI_DEV_FB_USED{%s} + DCGM_FI_DEV_FB_FREE{%s}) * 100"
                                  % (node, node, node), "{{Hostname}} GPU {{gpu}} {{GPU_I_PROFILE}}"), span=8))
         .with_panel(series("Power per GPU", "watt",
                            query("DCGM_FI_DEV_POWER_USAGE{%s}" % node, "{{Hostname}} GPU {{gpu}}"), span=8))
         .with_panel(listing("Last XID error per GPU", "max by (Hostname, gpu, UUID) (DCGM_FI_DEV_XID_ERRORS{%s})" % node,
                             "The last XID the driver reported per GPU (0: none since the driver loaded); "
                             "LabhubGpuXidError fires on any other value.")))
    d = (d.with_row(dash.Row("Per user server"))
         .with_panel(series("GPU utilisation per user server", "percent",
                            query("labhub:server_gpu_busy:max_percent{%s}" % node, "{{pod}}"),
                            description="The busiest GPU of each user server.", span=8))
         .with_panel(series("GPU memory per user server", "bytes",
                            query("sum by (pod) (DCGM_FI_DEV_FB_USED{%s,%s}) %s" % (SERVERS, node, MIB), "{{pod}}"),
                            span=8))
         .with_panel(series("GPU power per user server", "watt",
                            query("sum by (pod) (DCGM_FI_DEV_POWER_USAGE{%s,%s})" % (SERVERS, node), "{{pod}}"),
                            span=8)))
    return d


def hub() -> dash.Dashboard:
    spawns = "jupyterhub_server_spawn_duration_seconds"
    d = base("labhub-hub", "Labhub / JupyterHub",
             "Who uses the hub, how long servers take to start and how often they fail (JupyterHub's "
             "/hub/metrics), and whether the hub and its proxy run.")
    d = (d.with_row(dash.Row("Activity"))
         .with_panel(single("Active users (24h)", "none", 'max(jupyterhub_active_users{period="24h"})'))
         .with_panel(single("Running servers", "none", "max(jupyterhub_running_servers)"))
         .with_panel(single("Users", "none", "max(jupyterhub_total_users)"))
         .with_panel(series("Active users", "none",
                            query("max by (period) (jupyterhub_active_users)", "{{period}}"), span=12))
         .with_panel(series("Running servers", "none", query("max(jupyterhub_running_servers)", "running"), span=12)))
    d = (d.with_row(dash.Row("Spawns"))
         .with_panel(series(
             "Server start time", "s",
             query('histogram_quantile(0.5, sum by (le) (rate(%s_bucket{status="success"}[$__rate_interval])))' % spawns,
                   "median"),
             query('histogram_quantile(0.9, sum by (le) (rate(%s_bucket{status="success"}[$__rate_interval])))' % spawns,
                   "90th percentile", ref="B"), span=12))
         .with_panel(series("Server starts by result", "none",
                            query("sum by (status) (increase(%s_count[$__rate_interval]))" % spawns, "{{status}}"),
                            description="success, failure, throttled, too-many-users, already-pending", span=12,
                            stacked=True)))
    d = (d.with_row(dash.Row("Components"))
         .with_panel(series("Hub answers its scrape", "none", query('up{job="jupyterhub"}', "{{instance}}"), span=12))
         .with_panel(series("Hub and proxy pods available", "none",
                            query('kube_deployment_status_replicas_available{namespace="$hub_namespace",'
                                  'deployment=~"hub|proxy"}', "{{deployment}}"), span=12)))
    return d


def cluster() -> dash.Dashboard:
    d = base("labhub-cluster", "Labhub / Cluster capacity",
             "Nodes, what they offer and what pods request (kube-state-metrics), and how busy they are "
             "(node exporter).")
    resource = 'resource=~"cpu|memory|nvidia_com_gpu"'
    d = (d.with_row(dash.Row("Nodes"))
         .with_panel(single("Nodes Ready", "none", 'sum(kube_node_status_condition{condition="Ready",status="true"})'))
         .with_panel(single("Nodes not Ready", "none",
                            'count(kube_node_status_condition{condition="Ready",status="true"} == 0) or vector(0)'))
         .with_panel(single("GPUs allocatable", "none", 'sum(kube_node_status_allocatable{resource="nvidia_com_gpu"})'))
         .with_panel(listing("Allocatable and requested per node",
                             "sum by (node, resource) (kube_node_status_allocatable{%s})" % resource,
                             "What each node offers pods (CPU cores, memory bytes, GPUs).", span=12))
         .with_panel(series("Requested share of allocatable", "percent",
                            query("sum by (resource) (kube_pod_container_resource_requests{%s}) / sum by (resource) "
                                  "(kube_node_status_allocatable{%s}) * 100" % (resource, resource), "{{resource}}"),
                            description="How much of the cluster's CPU, memory and GPUs pods have requested.",
                            span=12)))
    d = (d.with_row(dash.Row("Usage"))
         .with_panel(series("CPU busy per node", "percent",
                            query('(1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[$__rate_interval])))'
                                  " * 100", "{{instance}}"), span=8))
         .with_panel(series("Memory used per node", "percent",
                            query("(1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes) * 100",
                                  "{{instance}}"), span=8))
         .with_panel(series("Fullest filesystem per node", "percent",
                            query('max by (instance) ((1 - node_filesystem_avail_bytes{fstype!~"tmpfs|overlay|squashfs'
                                  '|nsfs|ramfs|devtmpfs"} / node_filesystem_size_bytes{fstype!~"tmpfs|overlay|squashfs'
                                  '|nsfs|ramfs|devtmpfs"}) * 100)', "{{instance}}"), span=8)))
    return d


def portal() -> dash.Dashboard:
    d = base("labhub-portal", "Labhub / Portal",
             "The usage portal's own health: the recorder that samples every user pod, and the report sync to "
             "MySQL (the portal's /metrics).")
    job = 'job="labhub-portal"'
    d = (d.with_row(dash.Row("Recorder"))
         .with_panel(single("Since the last good recorder cycle", "s",
                            "time() - max(portal_recorder_last_success_timestamp_seconds{%s})" % job))
         .with_panel(single("Open sessions", "none", "sum(portal_open_sessions{%s})" % job))
         .with_panel(single("User pods seen", "none", "sum(portal_observed_pods{%s})" % job))
         .with_panel(series("Recorder cycles by result", "none",
                            query("sum by (result) (increase(portal_recorder_cycles_total{%s}[$__rate_interval]))" % job,
                                  "{{result}}"), span=12))
         .with_panel(series("Recorder cycle time (90th percentile)", "s",
                            query("histogram_quantile(0.9, sum by (le) (rate(portal_recorder_cycle_duration_seconds_bucket"
                                  "{%s}[$__rate_interval])))" % job, "p90"), span=12)))
    d = (d.with_row(dash.Row("Report sync"))
         .with_panel(single("Since the last good report sync", "s",
                            "time() - max(portal_report_sync_last_success_timestamp_seconds{%s})" % job))
         .with_panel(single("Report sync runs (24h)", "none",
                            "sum(increase(portal_report_sync_runs_total{%s}[24h]))" % job))
         .with_panel(single("Rows synced (24h)", "none", "sum(increase(portal_report_sync_rows_total{%s}[24h]))" % job))
         .with_panel(series("Report sync runs by result", "none",
                            query("sum by (result) (portal_report_sync_runs_total{%s})" % job, "{{result}}"), span=24)))
    return d


DASHBOARDS: dict[str, Callable[[], dash.Dashboard]] = {
    "labhub-gpus.json": gpus, "labhub-hub.json": hub, "labhub-cluster.json": cluster, "labhub-portal.json": portal,
}


def render() -> dict[str, str]:
    """file name -> JSON text, as committed."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    out = {}
    for name, build in DASHBOARDS.items():
        model = build().build()
        for number, panel in enumerate(model.panels or [], start=1):
            panel.id_val = number  # unique per dashboard (Grafana's links and "view panel" use it)
        out[name] = encoder.encode(model) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files, change nothing")
    parser.add_argument("--dir", type=Path, default=HERE, help="where the JSON files are (default: next to this file)")
    args = parser.parse_args(argv)
    drift = []
    for name, text in render().items():
        path = args.dir / name
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.check:
            drift.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if drift:
        print("dashboards differ from files/dashboards/generate.py: %s (run python files/dashboards/generate.py)"
              % ", ".join(drift), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
