"""Request bodies sent compressed, inflated here with a bound on what they inflate to.

aiohttp would inflate them itself, but then also inflates all of what a
handler did not read (it drains a body it answered early): a 256 KB gzip
body that inflates to 256 MB cost a second of CPU after its 413. The service
turns that off (server.py) and inflates here, stopping one byte past the
limit.
"""

from __future__ import annotations

import zlib

ENCODINGS = ("identity", "gzip", "deflate")


class TooLarge(Exception):
    """The body inflates to more than the limit."""


def inflate(data: bytes, encoding: str, max_bytes: int) -> bytes:
    """``data`` decoded from ``encoding`` (one of ENCODINGS); TooLarge past ``max_bytes``;
    zlib.error when it is not what it says."""
    if encoding == "identity":
        return data
    # gzip (members one after another, as RFC 1952 allows); deflate: the zlib format, or raw
    # deflate, which some clients send under that name.
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    else:
        wbits = zlib.MAX_WBITS if data[:1] == b"\x78" else -zlib.MAX_WBITS
    out, left = [], max_bytes + 1
    while data and left > 0:
        inflater = zlib.decompressobj(wbits)
        chunk = inflater.decompress(data, left)
        out.append(chunk)
        left -= len(chunk)
        if not inflater.eof:
            if left > 0:
                raise zlib.error("the compressed body ends before its end")
            break
        data = inflater.unused_data
    if left <= 0:
        out.clear()  # the traceback keeps this frame until the answer is sent
        raise TooLarge(f"inflates to more than {max_bytes} bytes")
    return b"".join(out)
