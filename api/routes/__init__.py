from fastapi import APIRouter

from api.routes import files, health, history, profiles, requests, uploads, webhooks

api_router = APIRouter(prefix="/api")
api_router.include_router(health.router)
api_router.include_router(uploads.router)
api_router.include_router(requests.router)
api_router.include_router(history.router)
api_router.include_router(webhooks.router)
api_router.include_router(profiles.router)

files_router = files.router
probes_router = health.probes  # /healthz and /readyz, at the root
