"""The GPU idle stop policy (PORTAL_GPU_IDLE_STOP): warn, tell the user, stop after a grace period."""

from .service import ACTOR, POLICY, GpuIdleStopper, PendingStop

__all__ = ["ACTOR", "POLICY", "GpuIdleStopper", "PendingStop"]
