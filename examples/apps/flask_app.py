"""Invoices API enforcing Verity itself, with Flask (the `@token_required` pattern done right).

The same invoices and policy as fastapi_app.py (examples/apps/invoices.policy.yaml).
Run it with:

    flask --app examples.apps.flask_app:create_app run --port 8003

See examples/apps/README.md for the tokens and the curl commands.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask, abort, current_app, g

from verity.identity import IssuerConfig, TokenVerifier
from verity.integrations.flask import Verity, require
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


def invoice_attributes(invoice_id: str | None) -> dict[str, Any] | None:
    """What the policy needs to know about the invoice (its owner), loaded by the app."""
    invoice = current_app.config["INVOICES"].get(invoice_id)
    return None if invoice is None else {"owner": invoice["owner"]}


def create_app(*, verifier: TokenVerifier | None = None, engine: Any = None) -> Flask:
    """The app; ``verifier`` and ``engine`` default to the environment and the policy file."""
    app = Flask(__name__)
    app.config["INVOICES"] = {key: dict(value) for key, value in INVOICES.items()}
    policy = os.environ.get("VERITY_POLICY", str(HERE / "invoices.policy.yaml"))
    Verity(app, verifier=verifier or verifier_from_env(), engine=engine or LivePolicy(policy))

    @app.get("/health")
    def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/invoices/<invoice_id>")
    @require(action="read", resource_type="invoice", resource_id_arg="invoice_id",
             attributes=invoice_attributes)  # fmt: skip
    def read_invoice(invoice_id: str) -> dict[str, Any]:
        invoice = app.config["INVOICES"].get(invoice_id) or abort(404)
        return {"id": invoice_id, **invoice, "viewer": g.verity_principal.id,
                "decision_id": g.verity_decision.decision_id}  # fmt: skip

    @app.post("/invoices/<invoice_id>/approve")
    @require(action="approve", resource_type="invoice", resource_id_arg="invoice_id",
             attributes=invoice_attributes)  # fmt: skip
    def approve_invoice(invoice_id: str) -> dict[str, Any]:
        invoice = app.config["INVOICES"].get(invoice_id) or abort(404)
        invoice.update(status="approved", approved_by=g.verity_principal.id)
        return {"id": invoice_id, **invoice}

    return app
