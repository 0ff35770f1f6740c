"""Form bodies (``application/x-www-form-urlencoded`` and ``multipart/form-data``), bounded.

Why our own parser: Twisted parses every POST body on the reactor thread as soon as it
has arrived — before routing or login — and its multipart path builds one e-mail message
object per part, so 80,000 empty parts in a 5 MiB body cost seconds of reactor time each
(issue 14 item 6). Here the web app calls :func:`parse_form` only after the route is known
and the caller is logged in; every body is refused beyond ``max_fields`` fields or parts
*before* it is split (a byte count, no objects), and large bodies are parsed in a thread.

Pure functions on bytes: no Twisted, no request object. Errors are :class:`FormDataError`
with the HTTP status and a message an office user can read.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

FormFields = dict[bytes, list[bytes]]

_PARAM = re.compile(rb';\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')


class FormDataError(ValueError):
    """A body that cannot be read as a form: ``status`` is 400 or 413."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def media_type(content_type: bytes | None) -> tuple[bytes, dict[bytes, bytes]]:
    """``b"multipart/form-data; boundary=x"`` → ``(b"multipart/form-data", {b"boundary": b"x"})``."""
    if not content_type:
        return b"", {}
    main, _, rest = content_type.partition(b";")
    params: dict[bytes, bytes] = {}
    for m in _PARAM.finditer(b";" + rest):
        value = m.group(2)
        if value.startswith(b'"') and value.endswith(b'"') and len(value) >= 2:
            value = re.sub(rb"\\(.)", rb"\1", value[1:-1])
        params[m.group(1).lower()] = value
    return main.strip().lower(), params


def parse_form(content_type: bytes | None, body: bytes, *, max_fields: int) -> FormFields:
    """The fields of a form body; an empty or non-form body gives ``{}``.

    Raises :class:`FormDataError` (413) when the body holds more than ``max_fields``
    fields or parts — counted from separators before anything is split — and (400) when
    a multipart body is malformed.
    """
    kind, params = media_type(content_type)
    if not body:
        return {}
    if kind == b"application/x-www-form-urlencoded":
        if body.count(b"&") >= max_fields:  # n fields have n - 1 separators
            raise FormDataError(413, f"The form has more than {max_fields} fields")
        fields: FormFields = {}
        for k, v in parse_qsl(body.decode("latin-1"), keep_blank_values=True, encoding="latin-1"):
            fields.setdefault(k.encode("latin-1"), []).append(v.encode("latin-1"))
        return fields
    if kind == b"multipart/form-data":
        boundary = params.get(b"boundary", b"")
        if not 1 <= len(boundary) <= 200:
            raise FormDataError(400, "The upload has no valid multipart boundary")
        return _multipart(body, boundary, max_fields)
    return {}


_DISPOSITION_NAME = re.compile(rb'(?:^|;)\s*name\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))', re.IGNORECASE)


def _multipart(body: bytes, boundary: bytes, max_fields: int) -> FormFields:
    delimiter = b"--" + boundary
    if body.count(delimiter) > max_fields + 1:  # n parts have n + 1 delimiters
        raise FormDataError(413, f"The upload has more than {max_fields} parts")
    if not body.startswith(delimiter):
        raise FormDataError(400, "The upload does not start with its boundary")
    separator = b"\r\n" + delimiter
    fields: FormFields = {}
    pos = len(delimiter)
    while True:
        if body.startswith(b"--", pos):
            return fields  # the closing delimiter; anything after it is epilogue
        if not body.startswith(b"\r\n", pos):
            raise FormDataError(400, "The upload is malformed (bad boundary line)")
        pos += 2
        if body.startswith(b"\r\n", pos):  # a part without headers
            headers, start = b"", pos + 2
        else:
            end = body.find(b"\r\n\r\n", pos)
            if end < 0:
                raise FormDataError(400, "The upload is malformed (part headers never end)")
            headers, start = body[pos:end], end + 4
        stop = body.find(separator, start)
        if stop < 0:
            raise FormDataError(400, "The upload is malformed (it is cut short)")
        name = _part_name(headers)
        if name is not None:
            fields.setdefault(name, []).append(body[start:stop])
        pos = stop + len(separator)


def _part_name(headers: bytes) -> bytes | None:
    for line in headers.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-disposition":
            m = _DISPOSITION_NAME.search(value.partition(b";")[2])
            if m is None:
                return None
            return re.sub(rb"\\(.)", rb"\1", m.group(1)) if m.group(1) is not None else m.group(2)
    return None
