"""Why a browser is at the sign-in form again (a leaf module: the gateway and the login
routes both use it, without importing each other).

Sign-out sets ``NOTICE_COOKIE`` for a minute; the gateway, sending a browser to sign in,
turns it (or a session cookie that no longer authenticates) into a ``notice`` word, which
the login routes pass to the provider as ``verity_notice``: the embedded IdP says it in a
fixed sentence, another provider ignores an unknown parameter.
"""

from __future__ import annotations

NOTICE_COOKIE = "verity_notice"
NOTICES = frozenset({"signed_out", "session_ended"})

__all__ = ["NOTICES", "NOTICE_COOKIE"]
