"""Billing arithmetic shared by the API, the stats SQL and the report sync.

Billable seconds of a session (see README, gap rule):

    effective_end = ended_at                                   if the session has ended
                  = min(now, last_seen_at + W)                  if it is still open
    span          = effective_end - started_at
    billable      = max(0, span - unobserved_seconds)

For a time window, the overlap of [started_at, effective_end) with the window is billed in
proportion (``overlap / span * billable``): unobserved stretches are removed pro rata.
Hours x requested CPU cores / GPUs / memory GiB give the resource hours; rates are the session's
billing terms (billing_terms: its department's rates when it started; GPU: the per-model rate, then
the GPU rate), each missing one the configured default.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

GIB = 1024 ** 3


def model_rate(model_rates: dict | None, model: str | None) -> Decimal | None:
    """A department's rate for one GPU model, None when it has none (or a malformed one)."""
    if not model or model not in (model_rates or {}):
        return None
    try:
        rate = Decimal(str(model_rates[model]))  # type: ignore[index]
    except ArithmeticError:  # malformed rate in the table: fall back to the plain GPU rate
        return None
    return rate if rate.is_finite() and rate >= 0 else None


@dataclass(frozen=True)
class Rates:
    cpu_core_hour: Decimal
    gpu_hour: Decimal
    memory_gib_hour: Decimal
    gpu_model_rates: dict

    def gpu_rate(self, model: str | None) -> Decimal:
        rate = model_rate(self.gpu_model_rates, model)
        return self.gpu_hour if rate is None else rate


def session_rates(session, settings) -> Rates:
    """The rates a session is billed with: its billing terms (the rates of its department when it
    started, GPU rate resolved for its model; see billing_terms), each NULL one the configured default."""
    def pick(value, default):
        return Decimal(str(value)) if value is not None else Decimal(str(default))

    return Rates(pick(session.cpu_core_hour_rate, settings.default_cpu_core_hour_rate),
                 pick(session.gpu_hour_rate, settings.default_gpu_hour_rate),
                 pick(session.memory_gib_hour_rate, settings.default_memory_gib_hour_rate), {})


def effective_end(session, now: datetime, gap_seconds: float) -> datetime:
    if session.ended_at is not None:
        return session.ended_at
    return min(now, session.last_seen_at + timedelta(seconds=gap_seconds))


def billable_seconds(session, now: datetime, gap_seconds: float,
                     window: tuple[datetime | None, datetime | None] = (None, None)) -> float:
    end = effective_end(session, now, gap_seconds)
    span = (end - session.started_at).total_seconds()
    if span <= 0:
        return 0.0
    billable = max(0.0, span - (session.unobserved_seconds or 0.0))
    lo, hi = window
    start = max(session.started_at, lo) if lo else session.started_at
    stop = min(end, hi) if hi else end
    overlap = (stop - start).total_seconds()
    if overlap <= 0:
        return 0.0
    return billable * overlap / span


@dataclass
class Usage:
    seconds: float = 0.0
    cpu_core_hours: float = 0.0
    gpu_hours: float = 0.0
    memory_gib_hours: float = 0.0
    cost: Decimal = Decimal(0)
    sessions: int = 0

    def add(self, session, seconds: float, rates: Rates) -> None:
        hours = seconds / 3600.0
        cpu = hours * float(session.cpu_request or 0.0)
        gpu = hours * float(session.gpu_request or 0)
        mem = hours * float(session.memory_request or 0) / GIB
        self.seconds += seconds
        self.cpu_core_hours += cpu
        self.gpu_hours += gpu
        self.memory_gib_hours += mem
        self.cost += (Decimal(repr(cpu)) * rates.cpu_core_hour + Decimal(repr(gpu)) * rates.gpu_rate(session.gpu_model)
                      + Decimal(repr(mem)) * rates.memory_gib_hour)
        self.sessions += 1

    def as_dict(self) -> dict:
        return {"hours": round(self.seconds / 3600.0, 4), "cpu_core_hours": round(self.cpu_core_hours, 4),
                "gpu_hours": round(self.gpu_hours, 4), "memory_gib_hours": round(self.memory_gib_hours, 4),
                "cost": float(round(self.cost, 2)), "sessions": self.sessions}


def session_usage(session, settings, now: datetime) -> Usage:
    usage = Usage()
    usage.add(session, billable_seconds(session, now, settings.gap_seconds), session_rates(session, settings))
    return usage
