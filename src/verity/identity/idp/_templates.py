"""The provider's pages: Jinja2 with autoescaping, no scripts, no external resources."""

from __future__ import annotations

from jinja2 import DictLoader, Environment, select_autoescape

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} - Verity</title>
<style>
body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0}
main{max-width:22rem;margin:10vh auto;background:#fff;padding:2rem;border-radius:8px;
box-shadow:0 1px 4px rgba(0,0,0,.15)}
label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.5rem;box-sizing:border-box}
button{margin-top:1.2rem;width:100%;padding:.6rem}.error{color:#b00020}
.notice{background:#eef4fb;padding:.6rem .8rem;border-radius:6px}
</style></head>
<body><main><h1>{{ title }}</h1>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
{% block body %}{% endblock %}
</main></body></html>"""

_LOGIN = """{% extends "base.html" %}{% block body %}
{% if notice %}<p class="notice" role="status">{{ notice }}</p>{% endif %}
<p>Sign in to continue to <strong>{{ client_name }}</strong>.</p>
<form method="post" action="{{ action }}">
<input type="hidden" name="tx" value="{{ tx }}">
<input type="hidden" name="csrf" value="{{ csrf }}">
<label for="email">E-mail address</label>
<input id="email" name="email" type="email" autocomplete="username" required value="{{ email }}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>{% endblock %}"""

_OTP = """{% extends "base.html" %}{% block body %}
<p>Enter the 6-digit code from your authenticator app.</p>
<form method="post" action="{{ action }}">
<input type="hidden" name="tx" value="{{ tx }}">
<input type="hidden" name="csrf" value="{{ csrf }}">
<label for="code">Code</label>
<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code"
 pattern="[0-9]{6}" maxlength="6" required>
<button type="submit">Verify</button>
</form>{% endblock %}"""

_ERROR = """{% extends "base.html" %}{% block body %}{% endblock %}"""

ENVIRONMENT = Environment(
    loader=DictLoader(
        {"base.html": _BASE, "login.html": _LOGIN, "otp.html": _OTP, "error.html": _ERROR}
    ),
    autoescape=select_autoescape(default=True, default_for_string=True),
    auto_reload=False,
)


def render(name: str, **context: object) -> str:
    """Render one page (every value is HTML-escaped)."""
    return ENVIRONMENT.get_template(name).render(**context)
