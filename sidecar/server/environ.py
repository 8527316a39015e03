"""The minimal WSGI environ for what is not proxied (Flask: API, UI, status, metrics).

Built from a head the worker already parsed: the keys WSGI (PEP 3333) requires, the CGI ones
Flask and werkzeug read, and the two gunicorn adds that the sidecar uses (RAW_URI,
gunicorn.socket).
"""

from __future__ import annotations

import sys

from gunicorn.http.wsgi import FileWrapper

from sidecar.server.head import Head

_EMPTY = b""


class _NoBody:
    """wsgi.input of a request without a body."""

    def read(self, size: int = -1) -> bytes:
        return _EMPTY

    def readline(self, size: int = -1) -> bytes:
        return _EMPTY

    def readlines(self, hint: int = -1) -> list[bytes]:
        return []

    def __iter__(self):
        return iter(())


def build_environ(head: Head, body, sock, client: tuple, server: tuple, scheme: str,
                  multiprocess: bool) -> dict:
    environ = {
        "REQUEST_METHOD": head.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": head.path,
        "QUERY_STRING": head.query,
        "RAW_URI": head.target,
        "SERVER_PROTOCOL": f"HTTP/{head.version[0]}.{head.version[1]}",
        "SERVER_NAME": str(server[0]) if server else "",
        "SERVER_PORT": str(server[1]) if server and len(server) > 1 else "",
        "REMOTE_ADDR": client[0] if client else "",
        "REMOTE_PORT": str(client[1]) if client and len(client) > 1 else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": body if body is not None else _NoBody(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
        "SERVER_SOFTWARE": "registry-webhook-sidecar",
        "gunicorn.socket": sock,
    }
    if head.content_length is not None:
        environ["CONTENT_LENGTH"] = head.content_length
    if head.chunked:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    for name, value in head.headers.items():
        if name == "Content-Type":
            environ["CONTENT_TYPE"] = value
        elif name != "Content-Length":
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ
