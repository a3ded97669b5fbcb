"""The model registry, read: `GET /api/models`.

Every model the platform can serve (the embedded one first) and which one serves each task
and language. Changes go through the CLI (`model import|activate|remove`), where the model's
files are: an import writes hundreds of megabytes beside the store, which is no request's
work. Mounted by `main` next to the other routers, with the same rate limit.
"""

from __future__ import annotations

from fastapi import APIRouter

from sentiment_platform.api.deps import SessionDep
from sentiment_platform.api.schemas import problems
from sentiment_platform.services.analysis.model_catalogue import ModelsView, catalogue

router = APIRouter(prefix="/api", responses=problems(429, 503), tags=["models"])


@router.get("/models", response_model=ModelsView)
async def list_models(session: SessionDep) -> ModelsView:
    """Every registered model, and per task the model serving each language (`*`: every
    language no other entry names)."""
    return await catalogue(session)
