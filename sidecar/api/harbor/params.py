"""Harbor's request conventions: error bodies, page/page_size, q, sort, Link, JSON bodies,
booleans.

Messages are Harbor's own: its go-swagger layer answers 422 "validation failure list:\\n..." for
parameters it cannot bind, and its query builder answers 400 for a malformed `q`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from flask import Response
from flask import request

from sidecar.store.views import Page

MAX_PAGE_SIZE = 100


class HarborError(Exception):
    """An API failure with Harbor's status, code and message."""

    def __init__(self, status: int, code: str, message: str, extra: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}


def bad_request(message: str) -> HarborError:
    return HarborError(400, "BAD_REQUEST", message)


def unprocessable(*messages: str) -> HarborError:
    return HarborError(422, "UNPROCESSABLE_ENTITY",
                       "validation failure list:\n" + "\n".join(messages))


def error_response(error: HarborError) -> Response:
    body = {"errors": [{"code": error.code, "message": error.message}], **error.extra}
    # Harbor writes the body with Fprintln: a trailing newline
    return Response(json.dumps(body) + "\n", status=error.status,
                    content_type="application/json; charset=utf-8")


def _int_param(args, name: str, default: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise unprocessable(f'{name} in query must be of type int64: "{raw}"') from None


def page_from(args) -> Page:
    page = _int_param(args, "page", 1)
    size = _int_param(args, "page_size", 10)
    if size > MAX_PAGE_SIZE:
        raise unprocessable(f"page_size in query should be less than or equal to {MAX_PAGE_SIZE}")
    return Page(max(page, 1), max(size, 0))


def parse_q(q: str) -> dict[str, Any]:
    """Harbor's `q` (k=v, k=~v, k={v1 v2}, k=(v1 v2), k=[min~max]).

    Exact values are strings; fuzzy is ("~", text); lists are ("{}"|"()", [values]);
    ranges are ("[]", min, max).
    """
    out: dict[str, Any] = {}
    if not q:
        return out
    q = unquote(q)
    for param in q.split(","):
        key, sep, value = param.partition("=")
        if not sep or not key or not value:
            raise bad_request('the query string must contain "=" and the key/value cannot be '
                              "empty")
        out[key] = _pattern(value)
    return out


def _pattern(value: str) -> Any:
    head = value[0]
    if head == "~":
        if len(value) >= 2:
            return ("~", value[1:])
    elif head == "[":
        if value[-1] == "]" and value.count("~") == 1:
            low, high = (part.strip() for part in value[1:-1].split("~"))
            if low or high:
                return ("[]", low, high)
    elif head in "{(":
        close = "}" if head == "{" else ")"
        if value[-1] == close:
            items = [v.strip().strip("\"'") for v in value[1:-1].split(" ") if v.strip()]
            return (head + close, items)
    else:
        return value[1:] if value.startswith("\\") else value
    raise bad_request(f"invalid query string value: {value}")


def parse_sort(sort: str | None) -> list[tuple[str, bool]]:
    """`field1,-field2` -> [(field1, False), (field2, True)] (True: descending)."""
    out = []
    for item in (sort or "").split(","):
        item = item.strip()
        if item:
            out.append((item.lstrip("-"), item.startswith("-")))
    return out


def links(path: str, args, total: int, page: Page) -> str:
    """Harbor's Link header: prev/next with page and page_size set, keys sorted, unescaped."""
    if page.page_size <= 0:
        return ""
    out = []

    def url(number: int) -> str:
        params = {key: args.getlist(key) for key in args}
        params["page"] = [str(number)]
        params["page_size"] = [str(page.page_size)]
        query = "&".join(f"{key}={value}" for key in sorted(params) for value in params[key])
        return f"{path}?{query}"

    if page.page > 1 and (page.page - 1) * page.page_size < total:
        out.append(f'<{url(page.page - 1)}>; rel="prev"')
    if page.page_size * page.page < total:
        out.append(f'<{url(page.page + 1)}>; rel="next"')
    return " , ".join(out)


def json_body(raw: bytes, name: str) -> Any:
    """The request's JSON, or go-swagger's 422 for a missing or unparsable body."""
    if not raw.strip():
        raise unprocessable(f"{name} in body is required")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise unprocessable(f'parsing {name} body from "" failed, because {exc}') from None


_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def parse_bool(value: Any) -> bool | None:
    """Go's strconv.ParseBool (what Harbor's Go code accepts); None if invalid."""
    if isinstance(value, bool):
        return value
    text = str(value)
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def _bool_param(raw: str | None, name: str, where: str, default: bool | None) -> bool | None:
    if raw is None or raw == "":
        return default
    value = parse_bool(raw)
    if value is None:
        raise unprocessable(f'{name} in {where} must be of type bool: "{raw}"')
    return value


def query_bool(name: str, default: bool | None = None) -> bool | None:
    """A boolean query parameter of this request (`with_detail=True` from generated clients
    included); 422 as go-swagger answers for anything strconv.ParseBool refuses."""
    return _bool_param(request.args.get(name), name, "query", default)


def header_bool(name: str, default: bool = False) -> bool:
    """A boolean header of this request (X-Is-Resource-Name, X-Resource-Name-In-Location)."""
    return bool(_bool_param(request.headers.get(name), name, "header", default))
