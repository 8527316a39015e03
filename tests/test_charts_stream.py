"""Reading an upload's Chart.yaml as the body streams: raw packages and multipart forms."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from sidecar.events.chartsniff import ChartYamlReader
from sidecar.events.chartsniff import MultipartChartReader
from sidecar.events.chartsniff import UploadInspector
from sidecar.events.chartsniff import multipart_boundary
from sidecar.proxy.taps import Prefix
from sidecar.proxy.taps import Tap
from sidecar.proxy.taps import tap_body
from tests.support.charts import make_chart
from tests.support.charts import random_bytes

LIMIT = 1024 * 1024


def feed(reader, data: bytes, step: int) -> None:
    for at in range(0, len(data), step):
        reader.feed(data[at:at + step])
    reader.finish()


@pytest.mark.parametrize("step", [1, 7, 512, 4096, 1 << 20])
def test_finds_chart_yaml_whatever_the_chunking(step):
    package = make_chart("my-cool-chart", "1.2.3-rc.1")
    reader = ChartYamlReader(LIMIT)
    feed(reader, package, step)
    assert reader.chart == ("my-cool-chart", "1.2.3-rc.1")
    assert reader.problem == ""
    assert reader.size == len(package)


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_member_names_in_every_tar_format(fmt):
    # a path over 100 characters goes to ustar's prefix field, a GNU long name or a pax header
    top = "c" * 120
    before = {} if fmt == tarfile.USTAR_FORMAT else {"templates/" + "t" * 150 + ".yaml": b"x"}
    package = make_chart("long", "0.0.1", chart_dir=top, fmt=fmt, before=before)
    reader = ChartYamlReader(LIMIT)
    feed(reader, package, 333)
    assert reader.chart == ("long", "0.0.1")


def test_chart_yaml_after_other_files_within_the_bound():
    package = make_chart("late", "1.0.0", before={"files/blob.bin": random_bytes(200_000)})
    reader = ChartYamlReader(LIMIT)
    feed(reader, package, 65536)
    assert reader.chart == ("late", "1.0.0")


def test_chart_yaml_beyond_the_bound_gives_up_but_counts_everything():
    package = make_chart("late", "1.0.0", before={"files/blob.bin": random_bytes(300_000)})
    reader = ChartYamlReader(100_000)
    feed(reader, package, 65536)
    assert reader.chart is None
    assert "first 100000 bytes" in reader.problem
    assert reader.size == len(package)


def test_a_decompression_bomb_is_bounded_by_inflated_bytes():
    package = make_chart("bomb", "1.0.0", before={"zeros": bytes(50_000_000)})
    assert len(package) < 200_000
    reader = ChartYamlReader(1_000_000)
    feed(reader, package, 65536)
    assert reader.chart is None
    assert "tar stream" in reader.problem


@pytest.mark.parametrize(("data", "problem"), [
    (b"not gzip at all", "not a gzip package"),
    (gzip.compress(b"x" * 2000), "not a tar package"),
    (gzip.compress(bytes(2048)), "no Chart.yaml in the package"),
    (b"", "empty body"),
])
def test_bad_packages(data, problem):
    reader = ChartYamlReader(LIMIT)
    feed(reader, data, 100)
    assert reader.chart is None
    assert problem in reader.problem


def test_chart_yaml_without_version():
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("app/Chart.yaml")
        text = b"apiVersion: v2\nname: app\n"
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    reader = ChartYamlReader(LIMIT)
    feed(reader, out.getvalue(), 50)
    assert reader.chart is None
    assert "does not name" in reader.problem


def test_nested_chart_yaml_is_not_the_chart():
    package = make_chart("outer", "2.0.0", before={"charts/sub/Chart.yaml":
                                                   b"name: sub\nversion: 9.9.9\n"})
    reader = ChartYamlReader(LIMIT)
    feed(reader, package, 4096)
    assert reader.chart == ("outer", "2.0.0")


def form(fields: list[tuple[str, str, bytes]], boundary: str = "----sidecar-boundary") -> bytes:
    out = b""
    for name, filename, data in fields:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                ).encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


@pytest.mark.parametrize("step", [1, 5, 64, 4096, 1 << 20])
def test_multipart_chart_and_prov(step):
    package = make_chart("app", "3.1.4")
    # the chart's bytes contain CRLFs and dashes; the boundary is only the real one
    body = form([("prov", "app-3.1.4.tgz.prov", b"-----BEGIN PGP\r\n--\r\n"),
                 ("chart", "app-3.1.4.tgz", package)])
    inspector = UploadInspector("multipart/form-data; boundary=----sidecar-boundary", LIMIT)
    feed(inspector, body, step)
    assert inspector.chart == ("app", "3.1.4")
    assert inspector.size == len(package)
    assert inspector.problem == ""


def test_multipart_without_chart_field():
    body = form([("prov", "x.prov", b"sig")])
    inspector = UploadInspector('multipart/form-data; boundary="----sidecar-boundary"', LIMIT)
    feed(inspector, body, 10)
    assert inspector.chart is None
    assert "no 'chart' field" in inspector.problem


def test_multipart_truncated():
    package = make_chart("app", "1.0.0")
    body = form([("chart", "app.tgz", package)])[:-40]
    reader = MultipartChartReader("----sidecar-boundary", ChartYamlReader(LIMIT))
    feed(reader, body, 1000)
    assert reader.chart == ("app", "1.0.0")  # found before the body broke off
    assert "ended before" in reader.problem


@pytest.mark.parametrize(("headers", "problem"), [
    (b"".join(b"\r\nX-Pad: " + b"y" * 4000 for _ in range(5)), "part headers too large"),
    (b"\r\nX-Long: " + b"y" * 5000, "malformed multipart body"),
    (b"\r\nBad Name: y", "malformed multipart body"),
])
def test_multipart_headers_are_bounded_and_checked(headers, problem):
    package = make_chart("app", "1.0.0")
    body = (b"--b\r\nContent-Disposition: form-data; name=\"chart\"" + headers + b"\r\n\r\n"
            + package + b"\r\n--b--\r\n")
    inspector = UploadInspector("multipart/form-data; boundary=b", LIMIT)
    feed(inspector, body, 512)
    assert inspector.chart is None
    assert problem in inspector.problem


def test_raw_upload_with_a_form_content_type():
    # curl --data-binary sends application/x-www-form-urlencoded: still a raw package
    package = make_chart("app", "1.0.0")
    inspector = UploadInspector("application/x-www-form-urlencoded", LIMIT)
    feed(inspector, package, 999)
    assert (inspector.chart, inspector.size) == (("app", "1.0.0"), len(package))


def test_multipart_boundary():
    assert multipart_boundary("multipart/form-data; boundary=abc") == "abc"
    assert multipart_boundary('Multipart/Form-Data; boundary="a b"') == "a b"
    assert multipart_boundary("multipart/form-data") is None
    assert multipart_boundary("application/octet-stream") is None


def test_taps_pass_bytes_unchanged_and_survive_a_failing_observer():
    seen = Prefix(10)
    data = [b"0123456789", b"abcdef"]
    assert list(tap_body(iter(data), Tap(seen))) == data
    assert (seen.data(), seen.complete, seen.seen) == (b"0123456789", False, 16)

    def broken(chunk):
        raise RuntimeError("bug")

    body = io.BytesIO(b"x" * 100)
    reader = tap_body(body, Tap(broken))
    assert reader.read(60) + reader.read(60) == b"x" * 100
    exact = Prefix(5)
    assert tap_body(b"hello", Tap(exact)) == b"hello"
    assert (exact.data(), exact.complete) == (b"hello", True)
