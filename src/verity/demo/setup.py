"""Preparing the demo's folder: secrets, people, audit key and ``verity.yaml``.

Everything lives in one folder (``.verity-demo`` by default, mode 0700). Passwords and
the client secret are random, made once, and kept in ``demo-secrets.json`` (mode 0600)
so that a second start prints the same logins; ``--reset`` starts afresh.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..audit.keys import generate_key
from ..identity.idp import UserExistsError, hash_password, open_user_store

PEOPLE = (
    # (e-mail, name, groups, roles)
    ("admin@demo.test", "Ada Admin", ("employees", "it"), ("admin",)),
    ("engineer@demo.test", "Emil Engineer", ("employees", "engineering"), ("engineer",)),
    ("contractor@demo.test", "Cora Contractor", ("contractors",), ("contractor",)),
)
CLIENT_ID = "verity-gateway"
# the policy reads roles (and groups); offline_access lets the gateway refresh its session
DEMO_SCOPES = ("openid", "email", "profile", "groups", "roles", "offline_access")


@dataclass(frozen=True)
class DemoSetup:
    """A prepared demo folder."""

    folder: Path
    config_path: Path
    gateway_url: str
    app_port: int
    passwords: dict[str, str]


def _secrets(folder: Path) -> dict[str, Any]:
    path = folder / "demo-secrets.json"
    if path.exists():
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    data = {
        "client_secret": secrets.token_urlsafe(32),
        "passwords": {email: secrets.token_urlsafe(12) for email, *_ in PEOPLE},
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
    return data


def _config(folder: Path, *, port: int, app_port: int, client_secret: str) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    issuer = f"{base}/idp"
    policy = resources.files("verity.demo").joinpath("policy.yaml")
    return {
        "server": {"host": "127.0.0.1", "port": port},
        "policy": {"path": str(policy), "reload_seconds": 2},
        "store": {"url": f"sqlite:///{folder / 'verity.db'}"},
        "audit": {"url": f"sqlite:///{folder / 'audit.db'}", "signing_key": "audit.key"},
        "identity": {
            "idp": {
                "issuer": issuer,
                "clients": [  # the gateway's own login client: its tokens are for the gateway
                    {"client_id": CLIENT_ID, "display_name": "the Verity demo app",
                     "client_secret": client_secret,
                     "redirect_uris": [f"{base}/verity/callback"], "audiences": ["verity"]},
                ],
            },
        },
        "login": {
            "public_url": base,
            "providers": [
                {"name": "demo", "display_name": "Verity demo sign-in", "issuer": issuer,
                 "client_id": CLIENT_ID, "client_secret": client_secret,
                 "scopes": list(DEMO_SCOPES)},
            ],
        },
        "gateway": {
            "public_url": base,
            "routes": [{"name": "demo", "host": "127.0.0.1", "upstream": f"http://127.0.0.1:{app_port}"}],
        },
    }  # fmt: skip


def prepare(
    folder: Path, *, port: int = 8080, app_port: int = 8081, reset: bool = False
) -> DemoSetup:
    """Create (or reuse) the demo folder; returns where everything is."""
    folder = folder.resolve()  # verity.yaml names absolute paths: any cwd, any command
    if reset and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = _secrets(folder)
    config = _config(folder, port=port, app_port=app_port, client_secret=data["client_secret"])
    config_path = folder / "verity.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    os.chmod(config_path, 0o600)  # it holds the client secret
    if not (folder / "audit.key").exists():
        generate_key(folder / "audit.key")
    with open_user_store(config["store"]["url"]) as users:
        for email, name, groups, roles in PEOPLE:
            try:
                users.add(email, password_hash=hash_password(data["passwords"][email]),
                          display_name=name, groups=groups, roles=roles)  # fmt: skip
            except UserExistsError:
                continue
    return DemoSetup(folder, config_path, f"http://127.0.0.1:{port}", app_port, data["passwords"])
