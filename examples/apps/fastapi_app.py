"""Invoices API enforcing Verity itself, with FastAPI (no gateway in front).

Owners read their own invoices, finance reads every invoice and approves them, and
nobody approves their own (examples/apps/invoices.policy.yaml). Run it with:

    uvicorn --factory examples.apps.fastapi_app:create_app --port 8001

See examples/apps/README.md for the tokens and the curl commands.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request

from verity.identity import IssuerConfig, TokenVerifier
from verity.integrations.fastapi import Verity, decision, require
from verity.model import Principal
from verity.policy import LivePolicy

HERE = Path(__file__).resolve().parent
INVOICES: dict[str, dict[str, Any]] = {
    "inv-1": {"owner": "alice", "amount": 120, "status": "submitted"},
    "inv-2": {"owner": "bob", "amount": 4800, "status": "submitted"},
}


def verifier_from_env() -> TokenVerifier:
    """Tokens minted by `verity token mint --dev` (see README.md), or your IdP's."""
    config = IssuerConfig(
        issuer=os.environ.get("VERITY_ISSUER", "https://dev.local"),
        audiences=(os.environ.get("VERITY_AUDIENCE", "invoices"),),
        algorithms=("ES256",),
        jwks_file=Path(os.environ.get("VERITY_JWKS", "dev-jwks.json")),
    )
    return TokenVerifier(config)


def invoice_attributes(request: Request, invoice_id: str | None) -> dict[str, Any] | None:
    """What the policy needs to know about the invoice (its owner), loaded by the app."""
    invoice = request.app.state.invoices.get(invoice_id)
    return None if invoice is None else {"owner": invoice["owner"]}


Reader = Annotated[
    Principal,
    Depends(require(action="read", resource_type="invoice", resource_id_param="invoice_id",
                    attributes=invoice_attributes)),
]  # fmt: skip
Approver = Annotated[
    Principal,
    Depends(require(action="approve", resource_type="invoice", resource_id_param="invoice_id",
                    attributes=invoice_attributes)),
]  # fmt: skip


def create_app(*, verifier: TokenVerifier | None = None, engine: Any = None) -> FastAPI:
    """The app; ``verifier`` and ``engine`` default to the environment and the policy file."""
    app = FastAPI(title="Invoices (Verity example)")
    policy = os.environ.get("VERITY_POLICY", str(HERE / "invoices.policy.yaml"))
    Verity(app, verifier=verifier or verifier_from_env(), engine=engine or LivePolicy(policy))
    app.state.invoices = {key: dict(value) for key, value in INVOICES.items()}

    @app.get("/health")
    def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/invoices/{invoice_id}")
    def read_invoice(invoice_id: str, principal: Reader, request: Request) -> dict[str, Any]:
        invoice = app.state.invoices.get(invoice_id)
        if invoice is None:
            raise HTTPException(404, "no such invoice")
        made = decision(request)
        return {"id": invoice_id, **invoice, "viewer": principal.id,
                "decision_id": made.decision_id if made else None}  # fmt: skip

    @app.post("/invoices/{invoice_id}/approve")
    def approve_invoice(invoice_id: str, principal: Approver) -> dict[str, Any]:
        invoice = app.state.invoices.get(invoice_id)
        if invoice is None:
            raise HTTPException(404, "no such invoice")
        invoice.update(status="approved", approved_by=principal.id)
        return {"id": invoice_id, **invoice}

    return app
