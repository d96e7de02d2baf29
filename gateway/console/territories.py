"""The user's territories (docs/console.md §4.3): size, use, deadline and state, and the
forms for minting, expanding and renewing one.

The gateway cannot pay for a user: minting, expanding and renewing are extrinsics the
owner signs, and a console session holds no key (an S3 key session holds no wallet at
all). So a form does not act: it answers with the exact ``deoss territory`` command that
does, and its price; the table shows the result once the command has run.

Rejected design: pasting a signed extrinsic for the gateway to submit. It needs the same
key and a tool to sign an extrinsic without sending it, and then sending it is one step
more than the command, which signs, sends and waits for its block.
"""

import shlex
from typing import Any, Final

from aiohttp import web

from chain_client.params import NetworkParams
from gateway.console.context import CONSOLE, query_int, query_text, session_of
from gateway.console.errors import ConsoleError
from gateway.console.html import Html, bytes_text, join, render
from gateway.console.pages import html_response, page, space_bar, table
from gateway.native.params import TERRITORY

__all__ = ["ACTIONS", "territories_page", "territory_command", "tokens"]

ACTIONS: Final = ("mint", "expand", "renew")
MAX_UNITS: Final = 2**32 - 1
TOKEN: Final = 10**18

_FORMS: Final = """<section class="territory-forms">
<form method="get" action="/console/territories" class="mint">
<input type="hidden" name="action" value="mint">
<h2>Mint</h2>
<label>Name <input name="name" required pattern="[A-Za-z0-9._\\-]{{1,63}}" maxlength="63"></label>
<label>Size (units of {unit}) <input name="size" type="number" min="1" value="1" required></label>
<label>Days <input name="days" type="number" min="{min_days}" value="{min_days}" required></label>
<button type="submit">Show the command</button>
</form>
<form method="get" action="/console/territories" class="expand">
<input type="hidden" name="action" value="expand">
<h2>Expand</h2>
<label>Territory <select name="name">{options}</select></label>
<label>Add units of {unit} <input name="size" type="number" min="1" value="1" required></label>
<button type="submit">Show the command</button>
</form>
<form method="get" action="/console/territories" class="renew">
<input type="hidden" name="action" value="renew">
<h2>Renew</h2>
<label>Territory <select name="name">{options}</select></label>
<label>Add days <input name="days" type="number" min="1" value="30" required></label>
<button type="submit">Show the command</button>
</form>
</section>
"""
_COMMAND: Final = """<section class="command-box" id="territory-command">
<h2>Run this with your key</h2>
<p>The gateway cannot sign for you: {what} is an extrinsic you sign and pay for
({price}). Run, with your key file in place of KEY_FILE:</p>
<pre class="command">{command}</pre>
<p>The table above shows the result once its block is in.</p>
</section>
"""


def tokens(amount: int) -> str:
    whole, fraction = divmod(amount, TOKEN)
    return f"{whole}.{fraction:018d}".rstrip("0").rstrip(".")


def territory_command(
    action: str, name: str, *, size: int | None, days: int | None, chain_rpc: str | None
) -> str:
    """``deoss territory mint|expand|renew`` as the shell takes it (docs/cli.md)."""
    argv = ["deoss", "territory", action, name]
    if action in ("mint", "expand"):
        argv += ["--size", str(size)]
    if action in ("mint", "renew"):
        argv += ["--days", str(days)]
    if chain_rpc:
        argv += ["--chain-rpc", chain_rpc]
    return shlex.join([*argv, "--key", "KEY_FILE"])


def _price(
    action: str,
    size: int,
    days: int,
    found: dict[str, Any] | None,
    params: NetworkParams,
    best: int,
) -> int:
    """What the chain will charge (docs/chain.md §5 storage_handler), now."""
    price = params.territory_unit_price
    if action == "mint":
        return size * days * price
    assert found is not None
    if action == "expand":
        days_left = -(-(int(found["deadline"]) - best) // params.blocks_per_day)
        return size * max(days_left, 0) * price
    return (int(found["total"]) // params.territory_unit) * days * price


def _command_box(request: web.Request, territories: list[dict[str, Any]], best: int) -> Html | None:
    action = query_text(request, "action", max_bytes=16)
    if action is None:
        return None
    if action not in ACTIONS:
        raise ConsoleError(400, "InvalidQuery", "action is mint, expand or renew")
    name = query_text(request, "name", max_bytes=63) or ""
    if not TERRITORY.match(name):
        raise ConsoleError(400, "InvalidTerritory", "a territory is 1..63 of [A-Za-z0-9._-]")
    native = request.app[CONSOLE].native
    params = native.service.params
    size = query_int(request, "size", low=1, high=MAX_UNITS)
    low_days = params.territory_min_days if action == "mint" else 1
    days = query_int(request, "days", low=low_days, high=MAX_UNITS)
    if action in ("mint", "expand") and size is None:
        raise ConsoleError(400, "InvalidQuery", "give the size in territory units")
    if action in ("mint", "renew") and days is None:
        raise ConsoleError(400, "InvalidQuery", f"give the days, at least {low_days}")
    found = next((t for t in territories if t["name"] == name), None)
    if action == "mint" and found is not None and found["state"] != "expired":
        raise ConsoleError(409, "TerritoryExists", f"you already have territory {name!r}")
    if action != "mint" and found is None:
        raise ConsoleError(404, "NoSuchTerritory", f"you have no territory {name!r}")
    price = _price(action, size or 0, days or 0, found, params, best)
    chain_rpc = getattr(native.service.chain, "url", None)
    command = territory_command(action, name, size=size, days=days, chain_rpc=chain_rpc)
    return render(
        _COMMAND, what=f"{action} {name}", price=f"{tokens(price)} tokens", command=command
    )


async def territories_page(request: web.Request) -> web.Response:
    state = request.app[CONSOLE]
    session = session_of(request)
    service = state.native.service
    params = service.params
    territories = await service.chain.query("storage_handler.territories", owner=session.account)
    best = (await service.chain.head()).best_block
    box = _command_box(request, territories, best)
    rows = []
    for found in territories:
        left = (found["deadline"] - best) * params.block_time
        expiry = f"block {found['deadline']}"
        if params.block_time and found["state"] == "active":
            expiry += f" (in about {max(left, 0) / 3600:.1f} h)"
        rows.append(
            [
                found["name"],
                render('<span class="state state-{state}">{state}</span>', state=found["state"]),
                bytes_text(found["total"]),
                bytes_text(found["used"]),
                bytes_text(found["locked"]),
                bytes_text(found["remaining"]),
                space_bar(found["total"], [("used", found["used"]), ("locked", found["locked"])]),
                expiry,
            ]
        )
    live = [t["name"] for t in territories if t["state"] != "expired"]
    options = join(render('<option value="{n}">{n}</option>', n=name) for name in live)
    parts = [
        render(
            '<p class="summary">Block {best}. A unit is {unit}, at {price} tokens a day; '
            "a new territory is leased for at least {min_days} days.</p>",
            best=best,
            unit=bytes_text(params.territory_unit),
            price=tokens(params.territory_unit_price),
            min_days=params.territory_min_days,
        ),
        table(
            ["Name", "State", "Size", "Used", "Locked", "Free", "Space", "Freezes at"],
            rows,
            empty="You have no territory: mint one below.",
            name="territories",
        ),
    ]
    if box is not None:
        parts.append(box)
    parts.append(
        render(
            _FORMS,
            unit=bytes_text(params.territory_unit),
            min_days=params.territory_min_days,
            options=options,
        )
    )
    body = page(
        name="territories",
        title="Territories",
        body=join(parts),
        gateway=state.native.gateway,
        session=session,
        csrf=state.sessions.csrf_token(session),
    )
    return html_response(body)
