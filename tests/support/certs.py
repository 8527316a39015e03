"""Self-signed TLS certificates for loopback servers, made with openssl."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path


def self_signed(where: Path, name: str = "127.0.0.1") -> tuple[str, str]:
    """(certificate, key) PEM paths for `name` alone: an IP address or a DNS name."""
    try:
        ipaddress.ip_address(name)
        alt = f"IP:{name}"
    except ValueError:
        alt = f"DNS:{name}"
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={name}", "-addext", f"subjectAltName={alt}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return str(cert), str(key)
