"""The answer of a sign-in app whose shared state cannot be reached right now.

When the session store, the user store or the counters behind brute-force protection are
down, sign-in, sign-out and the IdP's endpoints must neither guess nor half-finish: they
answer 503 with ``Retry-After``, a sentence a person can act on, and nothing internal
(the masked store URL and the cause go to the operator's log only). Whatever the store
did not acknowledge did not happen: a logout that could not be recorded leaves the session
as it was, and says so.
"""

from __future__ import annotations

import html
import logging

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from ..store.errors import StoreUnavailableError

log = logging.getLogger("verity.identity")
RETRY_AFTER_SECONDS = 5
MESSAGE = (
    "Sign-in is temporarily unavailable: Verity cannot reach its session store. "
    "Nothing was changed; try again in a few seconds."
)


async def store_unavailable(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for ``StoreUnavailableError``: 503, clear, no internals."""
    cause = exc.reason if isinstance(exc, StoreUnavailableError) else type(exc).__name__
    url = exc.url if isinstance(exc, StoreUnavailableError) else "?"
    log.error("sign-in request refused (%s %s): store %s unavailable: %s",
              request.method, request.url.path, url, cause)  # fmt: skip
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}
    if "application/json" in request.headers.get("accept", ""):
        body = {"error": "temporarily_unavailable", "error_description": MESSAGE}
        return JSONResponse(body, status_code=503, headers=headers)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Temporarily unavailable"
        f"</title></head><body><h1>Temporarily unavailable</h1><p>{html.escape(MESSAGE)}</p>"
        "</body></html>"
    )
    return HTMLResponse(page, status_code=503, headers=headers)


class PasswordHashingBusyError(Exception):
    """Every password-hashing slot stayed busy while this caller waited (see
    ``verity.identity.idp.passwords``): the login is refused, not queued without bound."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        super().__init__(f"all {concurrency} password-hashing slots stayed busy")


async def hashing_busy(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for ``PasswordHashingBusyError``: 503, retry shortly."""
    log.warning("sign-in request refused (%s %s): %s", request.method, request.url.path, exc)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}
    message = "Too many sign-ins at once. Nothing was changed; try again in a few seconds."
    if "application/json" in request.headers.get("accept", ""):
        body = {"error": "temporarily_unavailable", "error_description": message}
        return JSONResponse(body, status_code=503, headers=headers)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Temporarily unavailable"
        f"</title></head><body><h1>Temporarily unavailable</h1><p>{html.escape(message)}</p>"
        "</body></html>"
    )
    return HTMLResponse(page, status_code=503, headers=headers)


EXCEPTION_HANDLERS = {
    StoreUnavailableError: store_unavailable,
    PasswordHashingBusyError: hashing_busy,
}
"""``Starlette(exception_handlers=...)`` for every sign-in app."""
