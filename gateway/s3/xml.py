"""S3's XML: errors, response documents, and the few request bodies clients send.

Responses are built with ElementTree (so every key and value is escaped) in the S3
namespace. Request bodies are parsed with defusedxml (no DTDs, no entities), after a
size check by the caller.
"""

import datetime
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as defused

__all__ = [
    "S3_NAMESPACE",
    "S3Error",
    "element",
    "error_response",
    "iso_time",
    "leaves",
    "owner_element",
    "parse_xml",
    "xml_response",
]

S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


class S3Error(Exception):
    """A refused S3 request: its HTTP status, S3 error code and message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: str,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra  # more elements of the Error document (e.g. BucketName)
        self.headers = dict(headers or {})  # response headers (Allow, x-amz-delete-marker)


def iso_time(timestamp: float) -> str:
    """S3's timestamp form in XML: 2025-01-01T00:00:00.000Z."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def element(tag: str, *children: ET.Element | None, text: Any = None) -> ET.Element:
    node = ET.Element(tag)
    if text is not None:
        node.text = str(text)
    node.extend(child for child in children if child is not None)
    return node


def owner_element(owner: str) -> ET.Element:
    return element("Owner", element("ID", text=owner), element("DisplayName", text=owner))


def leaves(fields: Mapping[str, Any]) -> list[ET.Element]:
    """``<Name>value</Name>`` for each field whose value is not None."""
    return [element(name, text=value) for name, value in fields.items() if value is not None]


def _serialize(root: ET.Element) -> bytes:
    # An XML parser turns a literal CR into LF (XML 1.0 §2.11): a key holding one comes
    # back exactly only as a character reference, as S3 writes it.
    text: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return _DECLARATION + text.replace(b"\r", b"&#13;")


def xml_response(
    root: ET.Element, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    root.set("xmlns", S3_NAMESPACE)
    body = _serialize(root)
    return web.Response(body=body, status=status, content_type="application/xml", headers=headers)


def error_response(
    error: S3Error, resource: str, request_id: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    root = element(
        "Error",
        *leaves({"Code": error.code, "Message": error.message, **error.extra}),
        element("Resource", text=resource),
        element("RequestId", text=request_id),
    )
    return web.Response(
        body=_serialize(root),
        status=error.status,
        content_type="application/xml",
        headers={**error.headers, **(headers or {})},
    )


def parse_xml(body: bytes) -> ET.Element:
    """A request body's root element, namespaces stripped from tags; malformed XML is
    S3's ``MalformedXML``."""
    try:
        root = defused.fromstring(body, forbid_dtd=True)
    except (ET.ParseError, DefusedXmlException) as exc:
        raise S3Error(400, "MalformedXML", f"the XML is not well formed: {exc}") from None
    except LookupError as exc:  # an XML declaration naming an encoding Python lacks
        raise S3Error(400, "MalformedXML", f"the XML's encoding is unknown: {exc}") from None
    for node in root.iter():
        if isinstance(node.tag, str) and "}" in node.tag:
            node.tag = node.tag.split("}", 1)[1]
    return root


def children_text(node: ET.Element, tag: str) -> Iterable[str]:
    for child in node.findall(tag):
        yield child.text or ""
