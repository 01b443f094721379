"""What the routes get through ``Depends``: the store, the token checker and the push client.

``create_app`` keeps one ``State`` on ``app.state.backend``; tests may replace
any of these with ``app.dependency_overrides``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request

from local_gateway.reference_backend.dev_tokens import DevTokens
from local_gateway.reference_backend.lambda_push import LambdaPush
from local_gateway.reference_backend.memory_store import MemoryStore
from local_gateway.reference_backend.settings import ID_PATTERN


@dataclass(frozen=True)
class State:
    store: MemoryStore
    tokens: DevTokens
    push: LambdaPush


def _state(request: Request) -> State:
    state: State = request.app.state.backend
    return state


def get_store(request: Request) -> MemoryStore:
    return _state(request).store


def get_tokens(request: Request) -> DevTokens:
    return _state(request).tokens


def get_push(request: Request) -> LambdaPush:
    return _state(request).push


Store = Annotated[MemoryStore, Depends(get_store)]
Tokens = Annotated[DevTokens, Depends(get_tokens)]
Push = Annotated[LambdaPush, Depends(get_push)]
BookingId = Annotated[str, Path(pattern=ID_PATTERN)]
UserId = Annotated[str, Path(pattern=ID_PATTERN)]
