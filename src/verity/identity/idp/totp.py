"""TOTP second factor (RFC 6238, pyotp): 6 digits, 30-second steps, one step of drift.

``matching_step`` returns the time step a code belongs to; the caller records it with
``UserStore.use_totp_step`` so that each code is accepted at most once (no replay).
"""

from __future__ import annotations

import hmac
import re

import pyotp

STEP_SECONDS = 30
DIGITS = 6
_CODE = re.compile(r"[0-9]{6}")


def new_secret() -> str:
    """A new random TOTP secret (base32, 160 bits)."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, *, email: str, issuer_name: str = "Verity") -> str:
    """The ``otpauth://`` URI for authenticator apps (show once; it contains the secret)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=email, issuer_name=issuer_name
    )


def code_at(secret: str, *, at: float) -> str:
    """The code for time ``at`` (for tests and enrolment checks)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).at(int(at))


def matching_step(secret: str, untrusted_code: str, *, now: float, drift: int = 1) -> int | None:
    """The time step (``now // 30`` +- ``drift``) whose code equals ``untrusted_code``."""
    code = untrusted_code.strip().replace(" ", "")
    if not _CODE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = int(now // STEP_SECONDS)
    found: int | None = None
    for step in range(current - drift, current + drift + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code) and found is None:
            found = step
    return found
