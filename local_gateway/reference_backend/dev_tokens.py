"""Development tokens: HS256 JWTs with the user id as ``sub``."""

from __future__ import annotations

import time

import jwt
from fastapi import HTTPException


class DevTokens:
    def __init__(self, secret: str) -> None:
        self._secret = secret

    def issue(self, user_id: str, ttl_seconds: int) -> tuple[str, int]:
        """A token for ``user_id`` and its expiry (epoch seconds); a ttl of 0 has already expired."""
        now = int(time.time())
        expires_at = now + ttl_seconds
        claims = {"sub": user_id, "iat": now, "exp": expires_at}
        return jwt.encode(claims, self._secret, algorithm="HS256"), expires_at

    def user_for(self, token: str | None, *, required: bool = True) -> str | None:
        """The token's user; 401 when it is missing (and required), invalid or expired."""
        if not token:
            if required:
                raise HTTPException(401, "a token is required")
            return None
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], options={"require": ["sub"]})
        except jwt.PyJWTError:
            raise HTTPException(401, "the token is invalid or expired") from None
        return str(claims["sub"])

    def user(self, token: str | None) -> str:
        """The token's user; 401 without a valid token."""
        user = self.user_for(token)
        assert user is not None  # required: user_for raised otherwise
        return user
