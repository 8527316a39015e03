"""Read a chart upload's name and version from its package while the body streams through.

Pure: the proxy's tap feeds the bytes in. The upload URL and ChartMuseum's 201 say nothing about
which chart was saved; the package's `<chart>/Chart.yaml` does. The readers here are fed the
body chunk by chunk, inflate the gzip incrementally, walk the tar headers and keep only
Chart.yaml's bytes, and stop inflating once they have it. They look at no more than `limit`
bytes of the package (compressed, and again inflated): `helm package` writes Chart.yaml first,
so a real chart is found in its first kB, and a package whose Chart.yaml lies further in is
proxied untouched without an event. A multipart form is taken apart by python-multipart's
streaming parser, which bounds each part's header lines (count and length) itself.
"""

from __future__ import annotations

import tarfile
import zlib

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser
from python_multipart.multipart import parse_options_header

from sidecar.events.chartfiles import chart_metadata

#: Largest Chart.yaml, GNU long name or pax header we keep in memory.
MAX_MEMBER = 1024 * 1024
#: Most header bytes one part of a multipart body may have (python-multipart bounds each
#: line at 4224 bytes and a part at 8 lines; this bounds their sum).
MAX_PART_HEADERS = 16 * 1024
_INFLATE_STEP = 256 * 1024
_BLOCK = 512


class ChartYamlReader:
    """Finds `<dir>/Chart.yaml` in a .tgz fed in pieces.

    `chart` is (name, version) once found; `problem` says why it gave up (then no event).
    `size` counts every byte fed, found or not.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.size = 0
        self.chart: tuple[str, str] | None = None
        self.problem = ""
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._inflated = 0
        self._tar = bytearray()
        self._skip = 0
        self._collect: tuple[str, int, int] | None = None  # (what, size, padded size)
        self._next_name = ""  # from a GNU long-name or pax header
        self._zero_blocks = 0

    @property
    def done(self) -> bool:
        return self.chart is not None or bool(self.problem)

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        if self.done:
            return
        if self.size > self.limit:
            self._give_up(f"no Chart.yaml in the first {self.limit} bytes of the package")
            return
        try:
            out = self._inflater.decompress(data, _INFLATE_STEP)
            while True:
                self._walk(out)
                if self.done or not self._inflater.unconsumed_tail:
                    break
                out = self._inflater.decompress(self._inflater.unconsumed_tail, _INFLATE_STEP)
        except zlib.error as exc:
            self._give_up(f"not a gzip package ({exc})")

    def finish(self) -> None:
        """The body ended: whatever was not found now never will be."""
        if not self.done:
            self._give_up("no Chart.yaml in the package" if self.size else "empty body")

    def _give_up(self, problem: str) -> None:
        self.problem = problem
        self._tar = bytearray()
        self._inflater = None  # type: ignore[assignment]

    def _walk(self, inflated: bytes) -> None:
        self._inflated += len(inflated)
        if self._inflated > self.limit:
            self._give_up(f"no Chart.yaml in the first {self.limit} bytes of the tar stream")
            return
        tar = self._tar
        tar += inflated
        while not self.done:
            if self._skip:
                step = min(self._skip, len(tar))
                del tar[:step]
                self._skip -= step
                if self._skip:
                    return
            if self._collect is not None:
                what, size, padded = self._collect
                if len(tar) < size:
                    return
                member = bytes(tar[:size])
                del tar[:size]
                self._skip = padded - size
                self._collect = None
                self._member(what, member)
                continue
            if len(tar) < _BLOCK:
                return
            block = bytes(tar[:_BLOCK])
            del tar[:_BLOCK]
            self._header(block)

    def _header(self, block: bytes) -> None:
        if block == bytes(_BLOCK):
            self._zero_blocks += 1
            if self._zero_blocks >= 2:
                self._give_up("no Chart.yaml in the package")
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            self._give_up(f"not a tar package ({exc})")
            return
        name, self._next_name = self._next_name or info.name, ""
        padded = -(-info.size // _BLOCK) * _BLOCK
        if info.type == tarfile.GNUTYPE_LONGNAME:
            what = "longname"
        elif info.type == tarfile.XHDTYPE:
            what = "pax"
        elif info.type in tarfile.REGULAR_TYPES and _is_chart_yaml(name):
            what = "chart"
        else:
            self._skip = padded
            return
        if info.size > MAX_MEMBER:
            self._give_up(f"{what} member of {info.size} bytes is too large to read")
            return
        self._collect = (what, info.size, padded)

    def _member(self, what: str, data: bytes) -> None:
        if what == "longname":
            self._next_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif what == "pax":
            self._next_name = _pax_path(data) or ""
        else:
            found = chart_metadata(data)
            if found is None:
                self._give_up("Chart.yaml does not name the chart and its version")
            else:
                self.chart = found
                self._tar = bytearray()
                self._inflater = None  # type: ignore[assignment]


def _is_chart_yaml(name: str) -> bool:
    while name.startswith("./"):
        name = name[2:]
    parts = name.split("/")
    return len(parts) == 2 and parts[0] not in ("", ".", "..") and parts[1] == "Chart.yaml"


def _pax_path(data: bytes) -> str | None:
    """The `path` record of a pax extended header ("<len> path=<value>\\n" records)."""
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            return None
        try:
            length = int(data[pos:space])
        except ValueError:
            return None
        if length <= 0:
            return None
        record = data[space + 1: pos + length - 1]  # drop the trailing newline
        key, _, value = record.partition(b"=")
        if key == b"path":
            return value.decode("utf-8", "surrogateescape")
        pos += length
    return None


class MultipartChartReader:
    """Streams a multipart/form-data body, handing the `chart` field's bytes to a reader.

    Field names are ChartMuseum's defaults (`chart`, `prov`), which Harbor's API also used.
    `size` is the chart part's size; `chart`/`problem` come from the inner reader. A body the
    parser refuses (no boundary where one must be, over-long or too many part headers) stops
    the reading with a problem; the upload itself is proxied as it came.
    """

    def __init__(self, boundary: str, reader: ChartYamlReader, field: str = "chart"):
        self._reader = reader
        self._field = field
        self._header = bytearray()
        self._value = bytearray()
        self._disposition = b""
        self._header_bytes = 0
        self._seen_chart = False
        self._in_chart = False
        self._ended = False
        self.size = 0
        self.problem = ""
        callbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }
        self._parser: MultipartParser | None = None
        try:
            self._parser = MultipartParser(boundary, callbacks)
        except FormParserError as exc:
            self._fail(f"unusable multipart boundary ({exc})")

    @property
    def chart(self) -> tuple[str, str] | None:
        return self._reader.chart

    def feed(self, data: bytes) -> None:
        if self._parser is None or self._ended:
            return
        try:
            self._parser.write(data)
        except FormParserError as exc:
            self._fail(f"malformed multipart body ({exc})")
        except _HeadersTooLarge:
            self._fail("multipart part headers too large")

    def finish(self) -> None:
        if self._parser is not None and not self._ended:
            self._fail("multipart body ended before its closing boundary")
        if not self._seen_chart and not self.problem:
            self.problem = f"no {self._field!r} field in the multipart body"

    def _fail(self, problem: str) -> None:
        self._parser = None
        self.problem = self.problem or problem

    # -- the parser's callbacks ----------------------------------------------------------------
    def _part_begin(self) -> None:
        self._disposition = b""
        self._header_bytes = 0

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._value += data[start:end]

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_PART_HEADERS:
            raise _HeadersTooLarge

    def _header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = bytes(self._value)
        self._header.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        name = parse_options_header(self._disposition)[1].get(b"name", b"")
        self._in_chart = name.decode("latin-1") == self._field and not self._seen_chart
        self._seen_chart = self._seen_chart or self._in_chart

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_chart:
            self.size += end - start
            self._reader.feed(data[start:end])

    def _part_end(self) -> None:
        if self._in_chart:
            self._reader.finish()
            self._in_chart = False
            if self._reader.problem and not self.problem:
                self.problem = self._reader.problem

    def _end(self) -> None:
        self._ended = True


class _HeadersTooLarge(Exception):
    """Raised from a parser callback: stops the parse of this body."""


def multipart_boundary(content_type: str) -> str | None:
    """The boundary of a multipart/form-data Content-Type, else None."""
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        return None
    return params.get(b"boundary", b"").decode("latin-1") or None


class UploadInspector:
    """Watches one upload body (raw package or multipart form) for the chart it carries."""

    def __init__(self, content_type: str, limit: int):
        self._package = ChartYamlReader(limit)
        boundary = multipart_boundary(content_type)
        self._form = MultipartChartReader(boundary, self._package) if boundary else None

    def feed(self, data: bytes) -> None:
        (self._form or self._package).feed(data)

    def finish(self) -> None:
        (self._form or self._package).finish()

    @property
    def chart(self) -> tuple[str, str] | None:
        return self._package.chart

    @property
    def size(self) -> int:
        return self._form.size if self._form else self._package.size

    @property
    def problem(self) -> str:
        if self._package.chart is not None:
            return ""
        if self._form is not None and self._form.problem:
            return self._form.problem
        return self._package.problem
