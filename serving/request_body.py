"""Reading a request's body: its media type, encoding and size bounds, and the JSON it holds.

Every refusal is a RequestRejected naming the header or the body, so a client sees a 4xx, never a 500.
"""

from __future__ import annotations

import zlib

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from serving.app_keys import CHARGED, SERVICE, SETTINGS
from serving.config import Settings
from serving.core import VALUE_COST, VALUES_PER_USER, RequestRejected, count_json_values, parse_json
from serving.inflate import ENCODINGS, TooLarge, inflate


def body_bound(request: web.Request, settings: Settings) -> int:
    """The most bytes this request's body can take once read: its Content-Length when it is sent
    as is, else (compressed, chunked) MAX_BODY_BYTES."""
    length = request.content_length
    encoded = request.headers.get("Content-Encoding", "identity").strip().lower() != "identity"
    return settings.max_body_bytes if length is None or encoded else min(length, settings.max_body_bytes)


def content_type_header(request: web.Request) -> str | None:
    """The Content-Type header as sent, or None; 415 when it is not printable ASCII (RFC 9110's
    media types are), which the scorer could not be sent either."""
    value = request.headers.get("Content-Type")
    if value is not None and not (value.isascii() and value.isprintable()):
        raise RequestRejected(415, "unsupported_media_type", "Content-Type must be printable ASCII",
                              [{"row": None, "field": "Content-Type", "reason": "is not printable ASCII"}])
    return value


def media_type(request: web.Request) -> str:
    """The Content-Type without parameters; JSON when the client sent none."""
    return request.content_type if content_type_header(request) is not None else "application/json"


async def json_body(request: web.Request):
    content_type = media_type(request)
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise RequestRejected(415, "unsupported_media_type",
                              f"Content-Type must be application/json, not {content_type!r}",
                              [{"row": None, "field": "Content-Type", "reason": "is not JSON"}])
    body = await read_body(request)
    request["body"] = body
    values, most = count_json_values(body), VALUES_PER_USER * request.app[SETTINGS].max_batch_users
    try:
        if values > most:
            raise RequestRejected(413, "too_many_values", f"the body holds more than {most} JSON values",
                                  [{"row": None, "field": "body", "reason": f"more than {most} JSON values"}])
        if CHARGED in request:  # what it parses into counts against MAX_IN_FLIGHT_BYTES too
            request.app[SERVICE].grow(VALUE_COST * values)
            request[CHARGED] += VALUE_COST * values
        return parse_json(body)
    except RequestRejected:
        keep_body(request)
        raise


def keep_body(request: web.Request) -> None:
    """Log the body as sent (decoded leniently, its start only) when it has no users to log one by one."""
    limit = request.app[SETTINGS].log_input_max_bytes
    request["record"].raw_body = request["body"][:limit].decode("utf-8", "backslashreplace")


async def read_body(request: web.Request) -> bytes:
    """The body, inflated when it is compressed; at most MAX_BODY_BYTES both as sent and inflated."""
    limit = request.app[SETTINGS].max_body_bytes
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ENCODINGS:
        raise RequestRejected(415, "unsupported_content_encoding", f"Content-Encoding must be one of "
                              f"{', '.join(ENCODINGS)}", [{"row": None, "field": "Content-Encoding",
                                                           "reason": "is not supported"}])
    try:
        body = inflate(await request.read(), encoding, limit)
    except (web.HTTPRequestEntityTooLarge, TooLarge):
        # Made here, not kept in a local: a local holding the exception would make its traceback a
        # reference cycle that keeps the inflated bytes alive until a full garbage collection.
        raise RequestRejected(413, "body_too_large", f"the body is over {limit} bytes (after decompression)",
                              [{"row": None, "field": "body", "reason": "is too large"}]) from None
    except (zlib.error, HttpProcessingError, RequestPayloadError) as error:  # not gzip after all, a broken chunk
        field = "Content-Encoding" if encoding != "identity" else "body"
        raise RequestRejected(400, "unreadable_body", f"{field}: the body could not be read: {error}",
                              [{"row": None, "field": field, "reason": "could not be decoded"}]) from None
    request["record"].body_bytes = len(body)
    return body
