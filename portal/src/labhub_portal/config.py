"""Settings of the portal: one pydantic-settings class, environment prefix ``PORTAL_``.

Values come from the process environment first, then from the env file
(``/etc/labhub/portal.env`` unless ``PORTAL_ENV_FILE`` points elsewhere).  Validators normalise the
database URLs to their async drivers and refuse unsafe combinations (default or empty secrets
outside demo mode, no authentication at all on a non-loopback bind address).
"""

from __future__ import annotations

import os
from decimal import Decimal
from functools import cached_property
from typing import Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_ENV_FILE = "/etc/labhub/portal.env"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Values that are placeholders, never real secrets.
_WEAK_SECRETS = frozenset({"", "changeme", "change-me", "changethis", "secret", "token", "password", "admin", "portal"})
MIN_SECRET_LENGTH = 16
# The hub service token is shared with the jupyterhub role (labhub.platform), which requires 32 characters.
MIN_HUB_TOKEN_LENGTH = 32


def _env_file() -> str | None:
    path = os.environ.get("PORTAL_ENV_FILE", DEFAULT_ENV_FILE)
    return path if path and os.path.exists(path) else None


def normalise_database_url(url: str) -> str:
    """Map ``postgres://``/``postgresql://``/``sqlite://`` to the async drivers the portal uses."""
    url = url.strip()
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://"):]
    if url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return url
    raise ValueError("must be a postgresql:// (or sqlite:// for the demo) URL")


class MySQLTarget:
    """Connection parameters parsed from ``PORTAL_MYSQL_URL`` (mysql://user:pass@host:port/db?unix_socket=...)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mysql+aiomysql", "mariadb", "mysql+pymysql"):
            raise ValueError("must start with mysql://")
        self.user = unquote(parts.username or "")
        self.password = unquote(parts.password or "")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 3306
        self.database = (parts.path or "/").lstrip("/")
        if not self.database:
            raise ValueError("must name a database, e.g. mysql://user:pass@host/jupyterhub")
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        self.unix_socket = unquote(query["unix_socket"]) if "unix_socket" in query else None
        if not self.user:
            raise ValueError("must name a user")

    def connect_kwargs(self) -> dict:
        kwargs = {"user": self.user, "password": self.password, "db": self.database, "autocommit": False,
                  "charset": "utf8mb4"}
        if self.unix_socket:
            kwargs["unix_socket"] = self.unix_socket
        else:
            kwargs["host"] = self.host
            kwargs["port"] = self.port
        return kwargs


class Settings(BaseSettings):
    """All settings; the environment variable of each field is ``PORTAL_<FIELD NAME IN CAPITALS>``."""

    model_config = SettingsConfigDict(env_prefix="PORTAL_", env_file=_env_file(), env_file_encoding="utf-8",
                                      extra="ignore", case_sensitive=False)

    # --- service -----------------------------------------------------------------------------
    bind_host: str = Field("127.0.0.1", description="Address uvicorn binds to.")
    bind_port: int = Field(8780, ge=1, le=65535, description="Port uvicorn binds to.")
    base_url: str = Field("", description="Public URL of the portal (e.g. https://hub.example.org/services/portal). "
                                          "Used for the OAuth redirect URI; empty = derived from the request.")
    root_path: str = Field("", description="ASGI root path when served under a prefix (e.g. /services/portal).")
    demo: bool = Field(False, description="Demo mode: allows SQLite and placeholder secrets (set by `labhub-portal demo`).")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    timezone: str = Field("Asia/Taipei", description="IANA zone used to present timestamps and to cut days/months.")
    currency: str = Field("TWD", description="Currency label shown next to costs.")

    # --- databases ---------------------------------------------------------------------------
    database_url: str = Field("postgresql+asyncpg://labhub_portal@/labhub_portal",
                              description="PostgreSQL URL (postgresql:// is mapped to asyncpg). SQLite only in demo mode.")
    database_pool_size: int = Field(5, ge=1, le=100)
    mysql_url: SecretStr | None = Field(None, description="mysql://user:pass@host:port/db[?unix_socket=...]; "
                                                           "unset = report sync off.")
    mysql_table: str = Field("pod_report", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    report_sync_interval: float = Field(1800.0, gt=0, description="Seconds between report syncs.")
    report_sync_batch: int = Field(2000, ge=1, le=100000, description="Rows per MySQL transaction.")
    mysql_timeout: float = Field(30.0, gt=0, le=3600, description="Seconds before a MySQL connection attempt, "
                                                                   "statement or commit is abandoned: the sync "
                                                                   "fails (nothing half-written: the batch's "
                                                                   "transaction is not committed) and retries.")

    # --- cluster -----------------------------------------------------------------------------
    kubeconfig: str | None = Field(None, description="Path of a kubeconfig; unset and not in a pod = no cluster.")
    kube_context: str | None = None
    kube_in_cluster: bool | None = Field(None, description="Use the in-cluster service account. Default: auto "
                                                             "(when KUBERNETES_SERVICE_HOST is set and no kubeconfig).")
    hub_namespace: str = Field("jhub", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    singleuser_selector: str = Field("component=singleuser-server",
                                     description="Label selector of single-user pods.")
    kube_timeout: float = Field(10.0, gt=0, description="Seconds before a Kubernetes API call is abandoned.")
    prometheus_url: str | None = Field(None, description="Prometheus that scrapes the GPU Operator's DCGM exporter "
                                                        "(e.g. http://prometheus:9090): each running server's GPU "
                                                        "utilisation and memory on the Pods page; unset: not shown.")
    prometheus_timeout: float = Field(10.0, gt=0, description="Seconds before a Prometheus query is abandoned.")
    gpu_idle_threshold: float = Field(5.0, ge=0, le=100,
                                      description="A server's GPUs count as idle while their utilisation stays at "
                                                  "or below this % (DCGM_FI_DEV_GPU_UTIL, or a MIG instance's "
                                                  "DCGM_FI_PROF_GR_ENGINE_ACTIVE x 100; the highest of its GPUs).")
    gpu_idle_after: float = Field(3600.0, gt=0, description="Seconds the GPUs must stay idle before the Pods page "
                                                          "flags the server as holding idle GPUs.")
    gpu_idle_stop: bool = Field(False, description="The GPU idle stop policy: a server flagged GPU idle is "
                                                   "warned (its user told on their hub page, when the hub "
                                                   "allows it) and, if still idle gpu_idle_stop_grace seconds "
                                                   "later, stopped like a manual stop (audited as "
                                                   "policy:gpu-idle). Needs PORTAL_PROMETHEUS_URL. Off by "
                                                   "default.")
    gpu_idle_stop_grace: float = Field(900.0, ge=1, le=7 * 86400,
                                       description="Seconds between the warning (the user told) and the stop.")
    gpu_idle_check_interval: float = Field(60.0, gt=0, le=3600,
                                           description="Seconds between two rounds of the GPU idle stop policy.")
    usage_metrics_ttl: float = Field(15.0, gt=0, le=3600,
                                     description="Seconds a reading of the pods' actual CPU and memory use "
                                                 "(metrics.k8s.io) is reused before the next one (metrics-server "
                                                 "refreshes every 15-60 s).")
    record_interval: float = Field(30.0, gt=0, description="Seconds between recorder cycles.")
    gap_intervals: int = Field(3, ge=1, description="N: a pod unobserved for more than N record intervals is "
                                                    "in a gap (see README, gap rule).")
    retry_max_backoff: float = Field(300.0, gt=0, description="Upper bound of the retry back-off in seconds (the "
                                                              "recorder's is also at most record_interval, the "
                                                              "report sync's at most report_sync_interval).")

    # --- JupyterHub --------------------------------------------------------------------------
    hub_api_url: str | None = Field(None, description="Hub API URL as seen by the portal, e.g. http://hub:8081/hub/api")
    hub_api_token: SecretStr | None = Field(None, description="The portal's hub service API token "
                                                               "(also the OAuth client secret).")
    hub_public_url: str | None = Field(None, description="Hub URL as seen by browsers (OAuth authorize redirect); "
                                                          "default: derived from hub_api_url.")
    oauth_client_id: str = Field("service-labhub-portal", description="OAuth client id of the hub service.")
    admin_group: str | None = Field(None, description="Hub group whose members may use the portal (besides hub admins).")
    stop_timeout: float = Field(15.0, gt=0)
    allowed_hosts: str = Field("", description="Host names the portal answers to besides loopback, the bind address "
                                             "and the host of PORTAL_BASE_URL: comma-separated, *.domain for its "
                                             "subdomains, * for any. Other Host headers get 400 (DNS rebinding).")
    max_request_bytes: int = Field(8 * 1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024,
                                   description="Largest request body accepted (413 beyond); the users import "
                                               "takes files up to 5 MiB.")

    # --- auth --------------------------------------------------------------------------------
    token: SecretStr | None = Field(None, description="Bearer token for scripts (Authorization: Bearer ...).")
    cookie_secret: SecretStr | None = Field(None, description="Key that signs the browser session cookie "
                                                               "(required with OAuth).")
    cookie_secure: bool = Field(True, description="Mark cookies Secure (HTTPS only). Turn off only for plain-HTTP tests.")
    session_max_age: int = Field(8 * 3600, ge=60)

    # --- billing defaults (departments can override) -----------------------------------------
    default_cpu_core_hour_rate: Decimal = Field(Decimal("1"), ge=0)
    default_gpu_hour_rate: Decimal = Field(Decimal("30"), ge=0)
    default_memory_gib_hour_rate: Decimal = Field(Decimal("0.2"), ge=0)

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("mysql_url")
    @classmethod
    def _mysql_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        MySQLTarget(value.get_secret_value())
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("hub_api_url", "hub_public_url", "base_url", "prometheus_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return value.strip().rstrip("/")

    @field_validator("prometheus_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("gpu_idle_stop")
    @classmethod
    def _stop_needs_prometheus(cls, value: bool, info: ValidationInfo) -> bool:
        # a field check (prometheus_url is validated before it), so the error names this field only
        if value and not info.data.get("prometheus_url"):
            raise ValueError("needs PORTAL_PROMETHEUS_URL (the idle judgement comes from Prometheus): set it, "
                             "or turn the policy off")
        return value

    @field_validator("token", "cookie_secret", "hub_api_token", "prometheus_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        if isinstance(value, str) and value.strip() == "":
            return None
        return value

    @model_validator(mode="after")
    def _safety(self) -> "Settings":
        if not self.demo:
            if self.database_url.startswith("sqlite"):
                raise ValueError("database_url: SQLite is only allowed in demo mode; use PostgreSQL")
            for name in ("token", "cookie_secret", "hub_api_token"):
                secret = getattr(self, name)
                if secret is None:
                    continue
                raw = secret.get_secret_value()
                minimum = MIN_HUB_TOKEN_LENGTH if name == "hub_api_token" else MIN_SECRET_LENGTH
                if raw.strip().lower() in _WEAK_SECRETS or len(raw) < minimum:
                    raise ValueError(f"{name}: refusing a default or short secret "
                                     f"(need at least {minimum} characters)")
            if self.oauth_enabled and self.cookie_secret is None:
                raise ValueError("cookie_secret: required when JupyterHub OAuth login is configured")
        if self.token is None and not self.oauth_enabled and self.bind_host not in LOOPBACK_HOSTS:
            raise ValueError("token: neither PORTAL_TOKEN nor JupyterHub OAuth (PORTAL_HUB_API_URL + "
                             "PORTAL_HUB_API_TOKEN) is configured; refusing to listen on "
                             f"{self.bind_host!r} (only 127.0.0.1 is allowed without authentication)")
        return self

    # --- derived -----------------------------------------------------------------------------
    @property
    def oauth_enabled(self) -> bool:
        return bool(self.hub_api_url and self.hub_api_token)

    @property
    def auth_configured(self) -> bool:
        return self.token is not None or self.oauth_enabled

    @property
    def mysql_target(self) -> MySQLTarget | None:
        return MySQLTarget(self.mysql_url.get_secret_value()) if self.mysql_url else None

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def gap_seconds(self) -> float:
        """W = N x record interval: longer stretches without an observation are not billed."""
        return self.gap_intervals * self.record_interval

    @property
    def cluster_configured(self) -> bool:
        return bool(self.kubeconfig) or self.in_cluster

    @property
    def in_cluster(self) -> bool:
        if self.kube_in_cluster is not None:
            return self.kube_in_cluster
        return not self.kubeconfig and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))

    @property
    def public_hub_url(self) -> str | None:
        if self.hub_public_url:
            return self.hub_public_url
        if self.hub_api_url:
            return self.hub_api_url[: -len("/hub/api")] if self.hub_api_url.endswith("/hub/api") else self.hub_api_url
        return None


def get_settings(**overrides) -> Settings:
    return Settings(**overrides)
