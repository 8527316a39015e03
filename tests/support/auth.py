"""Credentials as real clients send them: a bcrypt htpasswd file, Basic headers, unsigned JWTs."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path


def htpasswd_file(path: Path, users: dict[str, str]) -> Path:
    """Write an htpasswd file the registry accepts (bcrypt only: it silently refuses $apr1$)."""
    if not shutil.which("htpasswd"):
        raise RuntimeError("htpasswd is not installed: apt-get install -y apache2-utils")
    lines = []
    for user, password in users.items():
        result = subprocess.run(["htpasswd", "-Bbn", user, password], capture_output=True,
                                text=True, check=True)
        lines.append(result.stdout.strip())
    path.write_text("\n".join(lines) + "\n")
    return path


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_jwt(claims: dict) -> str:
    """A JWT with alg "none": enough for attribution, which never verifies signatures."""
    header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64url(json.dumps(claims).encode())}."


def bearer(claims: dict) -> str:
    return f"Bearer {unsigned_jwt(claims)}"
