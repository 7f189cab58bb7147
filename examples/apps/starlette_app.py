"""Reports service enforcing Verity on every request, with Starlette middleware.

Employees read reports; finance (with MFA) publishes them; /health is not enforced
(examples/apps/starlette.policy.yaml). Run it with:

    uvicorn --factory examples.apps.starlette_app:create_app --port 8002

See examples/apps/README.md for the tokens and the curl commands.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from verity.identity import IssuerConfig, TokenVerifier
from verity.integrations.starlette import VerityMiddleware
from verity.policy import LivePolicy

HERE = Path(__file__).resolve().parent


def verifier_from_env() -> TokenVerifier:
    """Tokens minted by `verity token mint --dev` (see README.md), or your IdP's."""
    config = IssuerConfig(
        issuer=os.environ.get("VERITY_ISSUER", "https://dev.local"),
        audiences=(os.environ.get("VERITY_AUDIENCE", "reports"),),
        algorithms=("ES256",),
        jwks_file=Path(os.environ.get("VERITY_JWKS", "dev-jwks.json")),
    )
    return TokenVerifier(config)


async def health(_request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def list_reports(request: Request) -> JSONResponse:
    principal = request.state.verity_principal
    return JSONResponse({"reports": sorted(request.app.state.reports), "viewer": principal.id})


async def read_report(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    report = request.app.state.reports.get(name)
    if report is None:
        return JSONResponse({"error": "not_found"}, 404)
    return JSONResponse({"name": name, "body": report, "viewer": request.state.verity_principal.id,
                         "decision_id": request.state.verity_decision.decision_id})  # fmt: skip


async def publish_report(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    request.app.state.reports[name] = (await request.body()).decode("utf-8", "replace")
    return JSONResponse({"published": name, "by": request.state.verity_principal.id}, 201)


def create_app(*, verifier: TokenVerifier | None = None, engine: Any = None) -> Starlette:
    """The app; ``verifier`` and ``engine`` default to the environment and the policy file."""
    policy = os.environ.get("VERITY_POLICY", str(HERE / "starlette.policy.yaml"))
    middleware = Middleware(
        VerityMiddleware,
        verifier=verifier or verifier_from_env(),
        engine=engine or LivePolicy(policy),
        exclude_paths=("/health",),
    )
    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/reports", list_reports),
            Route("/reports/{name}", read_report, methods=["GET", "HEAD"]),
            Route("/reports/{name}", publish_report, methods=["POST"]),
        ],
        middleware=[middleware],
    )
    app.state.reports = {"q1": "Revenue grew 12%.", "q2": "Revenue grew 9%."}
    return app
