"""HTTP API routers: health, usage/stats, sessions, pods, report sync, users/departments, audit."""

from fastapi import APIRouter

from . import audit, health, pods, sessions, sync, usage, users

router = APIRouter()
for module in (health, usage, sessions, pods, sync, users, audit):
    router.include_router(module.router)
