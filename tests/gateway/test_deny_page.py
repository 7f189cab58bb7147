"""The deny page's next steps (``verity.gateway.responses``): concrete, escaped, and never
a link to a flow that does not exist."""

from __future__ import annotations

from verity.gateway import responses
from verity.gateway.responses import DenyContext
from verity.model import Decision, Effect, Reason, Remedy


def _denied(*remedies: Remedy, code: str = "jit.grant") -> Decision:
    reason = Reason(code, "engine words", "r", "a hint", summary="A sentence.", remedies=remedies)
    return Decision(Effect.DENY, None, "d-1", "v", (reason,))


CONTEXT = DenyContext(
    who="alice@example.com", principal_id="u-1", method="GET", path="/db/it's",
    home="/", sign_out="/verity/logout", sign_in_again="/verity/login?rd=%2Fdb",
    local_users=True,
)  # fmt: skip


def test_a_missing_grant_gets_the_exact_request_command_with_the_resource_filled_in() -> None:
    (step,) = responses.next_steps(_denied(Remedy("jit.grant", ("prod-db",))), CONTEXT)
    assert step.link is None  # no web form for grant requests yet: no link to nowhere
    assert step.command == (
        "verity grants request prod-db --for 1h --reason 'access to GET /db/it'\"'\"'s' "
        "--principal u-1"
    )


def test_missing_mfa_links_to_sign_in_again_and_says_how_to_enrol() -> None:
    again, enrol = responses.next_steps(_denied(Remedy("auth.mfa"), code="auth.mfa"), CONTEXT)
    assert again.link == "/verity/login?rd=%2Fdb"
    assert enrol.command == "verity users reset-mfa alice@example.com --enroll"


def test_a_role_remedy_has_no_link_and_no_command() -> None:
    decision = _denied(Remedy("principal.roles", ("admin",)), code="principal.roles")
    assert responses.next_steps(decision, CONTEXT) == []


def test_the_page_escapes_who_and_shows_home_and_sign_out_links() -> None:
    context = DenyContext(who="<script>x</script>@e.com", home="/", sign_out="/verity/logout")
    page = responses.denied(_denied(), html=True, context=context).body.decode()
    assert "<script>x" not in page
    assert "&lt;script&gt;x&lt;/script&gt;@e.com" in page
    assert '<a href="/">Home</a><a href="/verity/logout">Sign out</a>' in page
    assert "A sentence." in page
    assert "engine words" not in page  # the operator's words stay in the audit log


def test_a_forward_auth_page_names_the_person_but_links_nowhere() -> None:
    page = responses.denied(_denied(), html=True, context=DenyContext(who="a@e.com")).body
    assert b"a@e.com" in page
    assert b"<nav>" not in page
