"""The page around every console view, and the pieces views share: tables, space bars,
refusals, and the answer that carries a page (docs/console.md §4, §5)."""

from collections.abc import Sequence
from typing import Final

from aiohttp import web

from gateway.console.auth import Session
from gateway.console.html import Html, bytes_text, escape, join, render

__all__ = [
    "NAV",
    "cell",
    "error_page",
    "html_response",
    "page",
    "redirect",
    "short",
    "space_bar",
    "table",
]

NAV: Final = (
    ("objects", "Objects"),
    ("deals", "Deals"),
    ("territories", "Territories"),
    ("miners", "Miners"),
    ("challenges", "Challenges"),
    ("restoral", "Restoral"),
    ("health", "Health"),
)
# SECURITY: nothing inline runs or styles (script-src and style-src 'self'); the page
# cannot be framed, post elsewhere or load from another origin.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_HEAD: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{csrf}">
<title>{title} · deoss console</title>
<link rel="icon" href="/console/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/console/static/console.css">
<script src="/console/static/console.js" defer></script>
</head>
<body data-page="{name}">
"""
_HEADER: Final = """<header>
<span class="brand">deoss console</span>
<nav>{nav}</nav>
<span class="who" title="{account}">{short_account} · {method}</span>
<form method="post" action="/console/logout" class="logout">
<input type="hidden" name="csrf" value="{csrf}">
<button type="submit">Log out</button>
</form>
</header>
"""
_BODY: Final = """<main>
<h1>{title}</h1>
{body}
</main>
<footer>gateway <code>{gateway}</code></footer>
</body>
</html>
"""


def short(account: str | None, keep: int = 8) -> str:
    """An account or fid shortened for a table cell (the full one goes in a title)."""
    if not account:
        return "—"
    return account if len(account) <= 2 * keep + 1 else f"{account[:keep]}…{account[-4:]}"


def page(
    *,
    name: str,
    title: str,
    body: Html,
    gateway: str,
    session: Session | None = None,
    csrf: str = "",
) -> Html:
    parts = [render(_HEAD, csrf=csrf, title=title, name=name)]
    if session is not None:
        links = join(
            render(
                '<a href="/console/{page}"{current}>{label}</a>',
                page=page_name,
                label=label,
                current=Html(' aria-current="page"' if page_name == name else ""),
            )
            for page_name, label in NAV
        )
        method = "wallet signature" if session.method == "signature" else "S3 access key"
        parts.append(
            render(
                _HEADER,
                nav=links,
                account=session.account,
                short_account=short(session.account),
                method=method,
                csrf=csrf,
            )
        )
    parts.append(render(_BODY, title=title, body=body, gateway=gateway))
    return join(parts)


def redirect(location: str) -> web.Response:
    """303 See Other: after a form, the browser GETs ``location``."""
    return web.Response(status=303, headers={"Location": location})


def html_response(
    text: Html, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    # "replace": a lone surrogate that slipped through still encodes (as "?").
    return web.Response(
        status=status,
        body=text.encode("utf-8", "replace"),
        content_type="text/html",
        charset="utf-8",
        headers=headers,
    )


def error_page(
    *, status: int, code: str, message: str, gateway: str, session: Session | None, csrf: str
) -> Html:
    back = "/console/objects" if session is not None else "/console/login"
    body = render(
        '<p class="error" role="alert"><strong>{status} {code}</strong>: {message}</p>\n'
        '<p><a href="{back}">Back</a></p>',
        status=status,
        code=code,
        message=message,
        back=back,
    )
    return page(
        name="error", title="Refused", body=body, gateway=gateway, session=session, csrf=csrf
    )


def table(
    columns: Sequence[str], rows: Sequence[Sequence[object]], *, empty: str, name: str = ""
) -> Html:
    """A table whose cells are escaped unless they are ``Html``."""
    if not rows:
        return render('<p class="empty">{empty}</p>', empty=empty)
    head = join(render("<th>{c}</th>", c=column) for column in columns)
    body = join(
        render("<tr>{cells}</tr>\n", cells=join(render("<td>{v}</td>", v=v) for v in row))
        for row in rows
    )
    return render(
        '<table class="{name}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>',
        name=name,
        head=head,
        body=body,
    )


def space_bar(total: int, parts: Sequence[tuple[str, int]]) -> Html:
    """A stacked bar of ``parts`` (class, bytes) out of ``total``, as SVG: its widths are
    attributes, not inline styles, which the page's CSP forbids."""
    scale = 1000 / max(total, 1)
    offset = 0.0
    rects = []
    for part, value in parts:
        width = max(0.0, min(value * scale, 1000 - offset))
        rects.append(
            render(
                '<rect class="{part}" x="{x}" y="0" width="{width}" height="10">'
                "<title>{part}: {amount}</title></rect>",
                part=part,
                x=f"{offset:.1f}",
                width=f"{width:.1f}",
                amount=bytes_text(value),
            )
        )
        offset += width
    label = ", ".join(f"{part} {bytes_text(value)}" for part, value in parts)
    return render(
        '<svg class="bar" viewBox="0 0 1000 10" preserveAspectRatio="none" role="img" '
        'aria-label="{label} of {total}"><rect class="whole" x="0" y="0" width="1000" '
        'height="10"></rect>{rects}</svg>',
        label=label,
        total=bytes_text(total),
        rects=join(rects),
    )


def cell(value: object, *, title: str | None = None, kind: str = "") -> Html:
    """A span with an optional class and a hover title (a full account, a fid)."""
    if title is None and not kind:
        return escape(value)
    return render(
        '<span class="{kind}" title="{title}">{value}</span>',
        kind=kind,
        title=title or "",
        value=value,
    )
