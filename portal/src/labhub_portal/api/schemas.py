"""Response and request models (they make the OpenAPI document precise)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from .common import IsoDateTime

PodName = Annotated[str, StringConstraints(min_length=1, max_length=253,
                                           pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]


class UsageTotals(BaseModel):
    hours: float
    cpu_core_hours: float
    gpu_hours: float
    memory_gib_hours: float
    cost: float
    sessions: int


class StatsRow(UsageTotals):
    key: str = Field(description="user name, department, YYYY-MM-DD, YYYY-MM or 'total'")


class StatsResponse(BaseModel):
    group_by: str
    from_: str = Field(alias="from")
    to: str
    timezone: str
    currency: str
    rows: list[StatsRow]

    model_config = {"populate_by_name": True}


class RecorderStatus(BaseModel):
    enabled: bool
    state: str
    last_cycle_at: str | None = None
    last_success_at: str | None = None
    last_error: str | None = None
    consecutive_errors: int = 0
    observed_pods: int | None = None
    open_sessions: int | None = None
    duration_ms: float | None = None
    next_cycle_at: str | None = None


class SyncStatus(BaseModel):
    enabled: bool
    state: str
    last_run_at: str | None = None
    last_success_at: str | None = None
    last_rows: int | None = None
    last_error: str | None = None
    watermark: int | None = None


class UsageResponse(BaseModel):
    timezone: str
    currency: str
    now: str
    active_sessions: int
    active_gpus: int
    today: UsageTotals
    this_month: UsageTotals
    recorder: RecorderStatus
    report_sync: SyncStatus


class SessionItem(BaseModel):
    id: int
    pod_uid: str
    pod_name: str
    server_name: str
    namespace: str
    username: str
    display_name: str | None
    department: str | None
    image: str | None
    profile: str | None
    node: str | None
    cpu_request: float | None
    cpu_limit: float | None
    memory_request: int | None
    memory_limit: int | None
    gpu_request: int
    gpu_limit: int
    gpu_model: str | None
    started_at: str
    last_seen_at: str
    ended_at: str | None
    end_reason: str | None
    running: bool
    hours: float
    cpu_core_hours: float
    gpu_hours: float
    memory_gib_hours: float
    cost: float


class SessionPage(BaseModel):
    items: list[SessionItem]
    total: int
    page: int
    page_size: int
    pages: int


class GpuIdleStop(BaseModel):
    state: Literal["pending", "stopped"] = Field(description="pending: the server stops at stop_at unless its "
                                                             "GPUs are used again; stopped: the policy stopped it "
                                                             "at stopped_at (the pod is not gone yet)")
    warned_at: str = Field(description="when the policy warned (the user was told), in the portal's zone")
    stop_at: str = Field(description="end of the grace period: the server stops then if still idle")
    stopped_at: str | None = None
    user_told: bool = Field(description="the notice reached the user's hub page")
    notice: str = Field(description="what became of the notice, e.g. 'told on the hub page' or 'user not told: "
                                    "the hub has no notice endpoint'")


class GpuIdlePolicy(BaseModel):
    enabled: bool = Field(description="PORTAL_GPU_IDLE_STOP (and a cluster configured)")
    grace_seconds: float | None = None
    state: str = Field("off", description="off, starting, acting, or paused (Prometheus or the cluster "
                                          "unavailable: the policy stops nothing; detail says why)")
    detail: str = ""
    last_round_at: str | None = None


class PodItem(BaseModel):
    pod_name: str
    pod_uid: str
    namespace: str
    username: str
    server_name: str
    image: str | None
    profile: str | None
    node: str | None
    phase: str | None
    ready: bool
    deleting: bool
    started_at: str | None
    age_seconds: float | None
    cpu_request: float | None
    cpu_limit: float | None
    memory_request: int | None
    memory_limit: int | None
    gpu_request: int
    gpu_limit: int
    gpu_model: str | None
    cpu_usage: float | None = Field(None, description="CPU cores in use (metrics.k8s.io, averaged over its "
                                                      "window); null when not read")
    memory_usage: int | None = Field(None, description="memory in use, bytes (working set); null when not read")
    gpu_utilization: float | None = Field(None, description="GPU utilisation, % averaged over the pod's GPUs "
                                                            "(DCGM exporter via Prometheus); null when not read")
    gpu_memory_usage: int | None = Field(None, description="GPU memory in use, bytes, summed over the pod's GPUs")
    gpu_idle: bool | None = Field(None, description="true: its GPUs stayed at or below PORTAL_GPU_IDLE_THRESHOLD % "
                                                    "for PORTAL_GPU_IDLE_AFTER s; false: busier within that time; "
                                                    "null: not known (no data, or quiet but reported for less)")
    gpu_idle_stop: GpuIdleStop | None = Field(None, description="the GPU idle stop policy's warning of this "
                                                                "server (null: none, or the policy is off)")


class UsageReading(BaseModel):
    state: str = Field(description="ok, not served (no metrics.k8s.io), forbidden (the portal's Role), "
                                   "unavailable (the API or Prometheus failed), not configured (no Prometheus) "
                                   "or unknown (no cluster)")
    detail: str = ""
    read_at: str | None = Field(None, description="when the metrics were read, in the portal's zone")


class PodList(BaseModel):
    namespace: str
    pods: list[PodItem]
    usage: UsageReading = Field(default_factory=lambda: UsageReading(state="unknown"))
    gpu_usage: UsageReading = Field(default_factory=lambda: UsageReading(state="not configured"))
    gpu_idle_policy: GpuIdlePolicy = Field(default_factory=lambda: GpuIdlePolicy(enabled=False))


class StopRequest(BaseModel):
    pods: list[PodName] = Field(min_length=1, max_length=100,
                                description="names of single-user pods in the hub namespace")


class StopResult(BaseModel):
    pod_name: str
    result: str = Field(description="stopping (via hub) | deleted (pod deleted) | refused | failed")
    method: str | None = None
    detail: str


class StopResponse(BaseModel):
    results: list[StopResult]
    stopped: int
    refused: int
    failed: int


class SyncResponse(BaseModel):
    rows: int | None = Field(description="rows written; null while the sync is still running (202)")
    status: SyncStatus


class ImportResult(BaseModel):
    created: int
    updated: int
    departments_created: int
    rows: int
    sessions_rebilled: int = Field(0, description="recorded sessions whose billing terms or display name changed "
                                                  "(the report sync rewrites exactly these rows)")


class DepartmentRates(BaseModel):
    cpu_core_hour_rate: Annotated[Decimal, Field(ge=0, le=Decimal("1e6"), max_digits=12, decimal_places=4)] | None = None
    gpu_hour_rate: Annotated[Decimal, Field(ge=0, le=Decimal("1e6"), max_digits=12, decimal_places=4)] | None = None
    memory_gib_hour_rate: Annotated[Decimal, Field(ge=0, le=Decimal("1e6"), max_digits=12,
                                                   decimal_places=4)] | None = None
    gpu_model_rates: dict[Annotated[str, StringConstraints(min_length=1, max_length=255,
                                                           pattern=r"^[^\x00-\x1f\x7f]*$")],
                          Annotated[Decimal, Field(ge=0, le=Decimal("1e6"), max_digits=12, decimal_places=4)]] = {}


class DepartmentRatesChange(DepartmentRates):
    effective_from: Annotated[IsoDateTime | None, Field(
        description="when the rates take effect (ISO 8601; without an offset in the portal's zone): "
                    "now when omitted (a department's first rates: from the beginning); an earlier time "
                    "re-bills the sessions started since then; never in the future")] = None


class Department(DepartmentRates):
    name: str
    users: int


class AuditEntry(BaseModel):
    id: int
    at: str = Field(description="in the portal's zone")
    actor: str = Field(description="kind:name, e.g. hub:alice, token:portal, policy:gpu-idle")
    action: str = Field(description="stop_server, gpu_idle_warning, import_users, set_department_rates ...")
    target: str
    result: str
    detail: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEntry]
    total: int
    page: int
    page_size: int
    pages: int
