"""The app's batcher, for endpoints."""

from typing import Annotated

from fastapi import Depends, Request

from app.batcher.batcher import Batcher


async def get_batcher(request: Request) -> Batcher:
    batcher: Batcher = request.app.state.batcher
    return batcher


BatcherDep = Annotated[Batcher, Depends(get_batcher)]
