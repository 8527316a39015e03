"""The sidecar's gunicorn worker: gevent, with a lean request loop for the proxied paths.

A subclass of gunicorn's GeventWorker, so the master, signals, graceful stop, max_requests,
the heartbeat and every setting stay gunicorn's. What changes is the per-connection loop:
heads are parsed by llhttp (httptools) and checked as gunicorn checks them (server/head.py);
/v2/ and the chart routes go straight to the proxy with a ProxyRequest and no WSGI environ,
the response head leaving with the first body bytes in one send; everything else is a minimal
WSGI call of the application (Flask). gunicorn's own request handling cost about 90 us of the
sidecar's ~200 us per small proxied request (bench/floor.py).

A head that is not plainly valid, and every connection when PROXY protocol or HTTP/2 is on, is
handed to gunicorn's own loop with the bytes read so far: it answers exactly as the stock
worker does. `sidecar.http_worker: gunicorn` runs the stock worker instead.
"""

from __future__ import annotations

import errno
import ipaddress
import time
from datetime import datetime

import gevent
from gunicorn import http
from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker

from sidecar.proxy.request import ProxyRequest
from sidecar.server.body import ChunkedBody
from sidecar.server.body import LengthBody
from sidecar.server.body import Reader
from sidecar.server.environ import build_environ
from sidecar.server.head import Limits
from sidecar.server.head import Unusual
from sidecar.server.head import parse_head
from sidecar.server.respond import Responder

_RECV = 65536
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Stock(Exception):
    """Hand this connection to gunicorn's own loop."""


class SidecarWorker(GeventWorker):
    """gunicorn's gevent worker with the sidecar's request loop (see the module docstring)."""

    def load_wsgi(self) -> None:
        super().load_wsgi()
        cfg = self.cfg
        self._proxy_for = getattr(self.wsgi, "proxy_for", None)
        self._limits = Limits.from_config(cfg)
        self._lean = (cfg.proxy_protocol == "off" and "h2" not in cfg.http_protocols
                      and getattr(cfg, "protocol", "http") == "http")
        self._scheme = "https" if cfg.is_ssl else "http"
        self._access = self.log.access_log_enabled

    def handle(self, listener, client, addr) -> None:
        if not self._lean:
            return super().handle(listener, client, addr)
        client.setblocking(1)
        try:
            self._connection(listener, client, addr)
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.exception("Socket error processing request.")
        except (gevent.GreenletExit, SystemExit):
            pass
        except BaseException as exc:
            self.handle_error(None, client, addr, exc)
        finally:
            util.close(client)

    # -- the connection loop ---------------------------------------------------------------
    def _connection(self, listener, client, addr) -> None:
        cfg = self.cfg
        reader = Reader(client)
        server = listener.getsockname()
        trusted = not isinstance(addr, tuple) or _trusted(addr[0], cfg)
        secure_headers = cfg.secure_scheme_headers if trusted else {}
        keepalive = cfg.keepalive
        while True:
            try:
                data = self._read_head(reader, keepalive)
            except TimeoutError:
                return  # slowloris, or an idle keep-alive connection: close, as gunicorn does
            except _Stock:
                return self._stock(listener, client, addr, reader.buf)
            if data is None:
                return
            try:
                head = parse_head(data, self._limits, secure_headers)
            except Unusual:
                return self._stock(listener, client, addr, data + reader.buf)
            if not self._request(head, reader, client, addr, server) or not keepalive:
                return

    def _read_head(self, reader: Reader, keepalive: float) -> bytes | None:
        """The next request head, None at a clean end; _Stock when gunicorn must decide.

        The whole head must arrive within `keepalive` seconds of starting to wait for it
        (gunicorn's gevent worker puts a timeout around reading a head), else TimeoutError.
        """
        buf = reader.buf
        searched = 0
        limits = self._limits
        sock = reader.sock
        deadline = None
        try:
            while True:
                end = buf.find(b"\r\n\r\n", searched)
                if end >= 0:
                    reader.buf = buf[end + 4:]
                    return buf[:end + 4]
                if buf:
                    line_end = buf.find(b"\r\n")
                    if (line_end < 0 and len(buf) - 2 > limits.line) \
                            or len(buf) > limits.head_bytes \
                            or buf.count(b"\n") != buf.count(b"\r\n"):
                        raise _Stock  # gunicorn answers 414, 431 or 400
                if keepalive:
                    now = time.monotonic()
                    if deadline is None:
                        deadline = now + keepalive
                    elif now >= deadline:
                        raise TimeoutError
                    sock.settimeout(deadline - now)
                data = sock.recv(_RECV)
                if not data:
                    return None  # closed (mid-head: gunicorn drops it silently too)
                searched = max(0, len(buf) - 3)
                buf += data
                reader.buf = buf
        finally:
            if deadline is not None:
                sock.settimeout(None)

    def _request(self, head, reader: Reader, client, addr, server) -> bool:
        """Serve one request; whether the connection may carry another."""
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
        started = datetime.now() if self._access else None
        if head.expect_continue:
            client.sendall(_CONTINUE)
        body = None
        if head.chunked:
            body = ChunkedBody(reader, self._limits.field_size, self._limits.head_bytes)
        elif head.content_length is not None and int(head.content_length) > 0:
            body = LengthBody(reader, int(head.content_length))
        scheme = self._scheme if head.secure is None else ("https" if head.secure else "http")
        responder = Responder(client, head.version, head.method,
                              head.keep_alive and self.alive)
        serve = self._proxy_for(head.path) if self._proxy_for is not None else None
        environ = None
        result = None
        try:
            if serve is not None:
                request = ProxyRequest(
                    head.method, head.path, head.query, head.target, head.headers,
                    remote_addr=addr[0] if isinstance(addr, tuple) else "", scheme=scheme,
                    body=body, content_length=head.content_length, chunked=head.chunked,
                    local=lambda: _netloc(client))
                result = serve(request, responder.start_response)
            else:
                environ = build_environ(head, body, client, addr, server, scheme,
                                        self.cfg.workers > 1)
                result = self.wsgi(environ, responder.start_response)
            responder.send(result)
        except OSError:
            raise  # the client went away (handle() logs anything else)
        except Exception as exc:
            if not responder.head_sent:
                self.handle_error(None, client, addr, exc)
            else:
                self.log.exception("Error handling request %s %s", head.method, head.target)
            return False
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    self.log.exception("closing the response of %s %s failed", head.method,
                                       head.target)
            if started is not None:
                self._log_access(head, responder, environ, addr, server, started)
        if not responder.keep_alive:
            return False
        return body is None or body.finish()

    # -- gunicorn's own loop, for what the lean one does not take ---------------------------
    def _stock(self, listener, client, addr, buffered: bytes) -> None:
        """gunicorn's keep-alive loop (AsyncWorker.handle), from the bytes read so far."""
        parser = http.get_parser(self.cfg, client, addr)
        if buffered:
            parser.unreader.unread(buffered)
        listener_name = listener.getsockname()
        req = None
        try:
            while True:
                req = None
                with self.timeout_ctx():
                    req = next(parser)
                if not req:
                    break
                self.handle_request(listener_name, req, client, addr)
                if not self.cfg.keepalive:
                    break
        except http.errors.NoMoreData as exc:
            self.log.debug("Ignored premature client disconnection. %s", exc)
        except StopIteration as exc:
            self.log.debug("Closing connection. %s", exc)
        except OSError:
            raise
        except Exception as exc:
            self.handle_error(req, client, addr, exc)

    def _log_access(self, head, responder: Responder, environ, addr, server, started) -> None:
        if environ is None:
            proxies = getattr(self.wsgi, "proxies", None)  # sidecar.trusted_proxies
            if proxies is not None and isinstance(addr, tuple) and addr:
                addr = (proxies.client(addr[0], head.headers.get("X-Forwarded-For")), *addr[1:])
            environ = build_environ(head, None, None, addr, server, self._scheme, False)
        self.log.access(_Logged(responder), _LoggedRequest(head), environ,
                        datetime.now() - started)


class _Logged:
    """What gunicorn's access log reads of a response."""

    def __init__(self, responder: Responder):
        self.status = responder.status
        self.headers = responder.headers
        self.sent = responder.sent


class _LoggedRequest:
    """What gunicorn's access log reads of a request: its headers."""

    def __init__(self, head):
        self.headers = [(name.upper(), value) for name, value in head.headers.items()]


def _netloc(sock) -> str:
    try:
        host, port = sock.getsockname()[:2]
    except (OSError, TypeError, ValueError):
        return ""
    host = str(host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"



def _trusted(ip: str, cfg) -> bool:
    """Whether a peer may set scheme headers (gunicorn's forwarded_allow_ips)."""
    if "*" in cfg.forwarded_allow_ips:
        return True
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in cfg.forwarded_allow_networks())
