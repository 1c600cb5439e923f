"""Odd headers, parameters and bodies at the edge of the service: a 4xx naming what is wrong, never a 500.

Sent as raw bytes over a socket, since an HTTP client library refuses to send most of them.
"""

from __future__ import annotations

import gzip
import json
import socket

import pytest

from tests.serving.conftest import rows_for

USER = {"country": "es", "source": "Organic", "platform": "iOS", "event_1": 100, "event_2": 50}
BODY = json.dumps(USER).encode()


def raw_http(port: int, method: str, path: bytes, headers: list[tuple[bytes, bytes]] = (),
             body: bytes = b"") -> tuple[int, dict, dict | str]:
    head = [method.encode() + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close",
            b"Content-Length: " + str(len(body)).encode(), *(k + b": " + v for k, v in headers)]
    with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
        connection.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        data = b""
        while chunk := connection.recv(1 << 16):
            data += chunk
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    answer_headers = dict(line.split(": ", 1) for line in lines[1:])
    try:
        return int(lines[0].split()[1]), answer_headers, json.loads(payload)
    except ValueError:
        return int(lines[0].split()[1]), answer_headers, payload.decode("latin-1")


JSON = (b"Content-Type", b"application/json")
EDGES = [  # (name, method, path, headers, body, status, the field the answer names)
    ("a since too far back", "GET", b"/stats?since=3000000d", [], b"", 400, "since"),
    ("a since past any duration", "GET", b"/stats?since=" + b"9" * 30 + b"w", [], b"", 400, "since"),
    ("a since before year 1 in UTC", "GET", b"/stats?since=0001-01-01T00:00:00%2B23:00", [], b"", 400, "since"),
    ("a since in the last hour of year 9999", "GET", b"/stats?since=9999-12-31T23:30:00", [], b"", 400, "since"),
    ("a since in the last day of year 9999 on /performance", "GET", b"/performance?since=9999-12-31T12:00:00", [],
     b"", 400, "since"),
    ("a since with an offset PostgreSQL refuses", "GET", b"/stats?since=2024-01-01T00:00:00%2B23:00", [], b"", 200,
     None),
    ("a since that is not UTF-8", "GET", b"/stats?since=%FF%FE", [], b"", 400, "since"),
    ("a Content-Type with UTF-8 bytes on /invocations", "POST", b"/invocations",
     [(b"Content-Type", "application/json; charset=\u00e9\u4e2d".encode())], BODY, 415, "Content-Type"),
    ("a Content-Type with UTF-8 bytes on /predict", "POST", b"/predict",
     [(b"Content-Type", "application/j\u00e9son".encode())], BODY, 415, "Content-Type"),
    ("a Content-Type that is not UTF-8 on /invocations", "POST", b"/invocations",
     [(b"Content-Type", b"text/csv; x=\xff\xfe")], b"a,b\n1,2\n", 415, "Content-Type"),
    ("a request id that is not UTF-8", "POST", b"/predict", [JSON, (b"X-Request-Id", b"\xff\xfe-id")], BODY, 200, None),
    ("gzip that is not gzip", "POST", b"/predict", [JSON, (b"Content-Encoding", b"gzip")], b"not gzip at all", 400,
     "Content-Encoding"),
    ("an unknown Content-Encoding", "POST", b"/predict", [JSON, (b"Content-Encoding", b"x-unknown")], BODY, 415,
     "Content-Encoding"),
    ("a Content-Type that is not UTF-8 on /stats", "GET", b"/stats", [(b"Content-Type", b"\xff")], b"", 200, None),
    ("dataframe_split with unhashable columns", "POST", b"/invocations", [JSON],
     json.dumps({"dataframe_split": {"columns": [[1], {"a": 2}], "data": [[1, 2]]}}).encode(), 400,
     "dataframe_split.columns"),
    ("dataframe_split with a row longer than its columns", "POST", b"/invocations", [JSON],
     json.dumps({"dataframe_split": {"columns": ["country"], "data": [["es", 1, 2]]}}).encode(), 400, None),
]


@pytest.mark.parametrize("name, method, path, headers, body, status, field", EDGES, ids=[e[0] for e in EDGES])
def test_odd_headers_and_parameters_get_a_4xx_naming_the_field(service, name, method, path, headers, body,
                                                                status, field):
    got, answer_headers, answer = raw_http(service.port, method, path, headers, body)
    assert got == status, answer
    if field is not None:
        assert field in answer["message"] and answer["problems"][0]["field"] == field, answer
    if got >= 400:  # a rejected request is logged like any other
        (row,) = rows_for(service.database_url, [answer_headers["X-Request-Id"]], expected=1)
        assert row["status_code"] == got


def test_a_gzip_body_is_read_after_decompression(service):
    got, _, answer = raw_http(service.port, "POST", b"/predict", [JSON, (b"Content-Encoding", b"gzip")],
                              gzip.compress(BODY))
    assert got == 200 and answer["predicted_revenue"] >= 0
