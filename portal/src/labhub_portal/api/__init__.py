"""HTTP API routers: health, usage/stats, sessions, pods, report sync, users/departments."""

from fastapi import APIRouter

from . import health, pods, sessions, sync, usage, users

router = APIRouter()
for module in (health, usage, sessions, pods, sync, users):
    router.include_router(module.router)
