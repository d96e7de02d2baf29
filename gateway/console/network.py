"""The network as the chain and this gateway see it (docs/console.md §4.4 to §4.7): miners
and their space classes, challenges and their outcomes, restoral orders and repairs, and
the gateway's health and metrics."""

import asyncio
from typing import Any, Final

from aiohttp import web

from chain_client.errors import ChainError
from gateway.console.context import CONSOLE, session_of
from gateway.console.html import Html, bytes_text, join, render
from gateway.console.pages import cell, html_response, page, short, space_bar, table
from gateway.records import PENDING, UNPAID

__all__ = ["challenges_page", "health_facts", "health_page", "miners_page", "restoral_page"]

CHALLENGES_SHOWN: Final = 100
ORDERS_SHOWN: Final = 200
EVENTS_SHOWN: Final = 100
_LEGEND: Final = Html(
    '<p class="legend"><span class="key service">service</span> '
    '<span class="key locked">locked</span> <span class="key idle">idle</span> '
    '<span class="key whole">declared, not yet idle</span></p>'
)


def _view(request: web.Request, name: str, title: str, body: Html) -> web.Response:
    state = request.app[CONSOLE]
    session = session_of(request)
    return html_response(
        page(
            name=name,
            title=title,
            body=body,
            gateway=state.native.gateway,
            session=session,
            csrf=state.sessions.csrf_token(session),
        )
    )


def _state_cell(state: str) -> Html:
    return render('<span class="state state-{state}">{state}</span>', state=state)


async def miners_page(request: web.Request) -> web.Response:
    chain = request.app[CONSOLE].native.service.chain
    miners, totals = await asyncio.gather(
        chain.query("sminer.miners"), chain.query("sminer.totals")
    )
    rows = [
        [
            cell(short(m["account"]), title=m["account"], kind="account"),
            _state_cell(m["state"]),
            m["endpoint"],
            bytes_text(m["declared"]),
            bytes_text(m["idle"]),
            bytes_text(m["locked"]),
            bytes_text(m["service"]),
            space_bar(
                m["declared"],
                [("service", m["service"]), ("locked", m["locked"]), ("idle", m["idle"])],
            ),
            m["last_heartbeat"],
        ]
        for m in miners
    ]
    states: dict[str, int] = {}
    for miner in miners:
        states[miner["state"]] = states.get(miner["state"], 0) + 1
    summary = render(
        '<p class="summary">{count} miners ({states}); the network declares {declared}: '
        "{idle} idle, {locked} locked, {service} service.</p>",
        count=len(miners),
        states=", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none",
        declared=bytes_text(totals.get("declared", 0)),
        idle=bytes_text(totals.get("idle", 0)),
        locked=bytes_text(totals.get("locked", 0)),
        service=bytes_text(totals.get("service", 0)),
    )
    body = join(
        [
            summary,
            _LEGEND,
            table(
                [
                    "Miner",
                    "State",
                    "Endpoint",
                    "Declared",
                    "Idle",
                    "Locked",
                    "Service",
                    "Space",
                    "Heartbeat (block)",
                ],
                rows,
                empty="No miner has registered.",
                name="miners",
            ),
        ]
    )
    return _view(request, "miners", "Miners", body)


def outcome(challenge: dict[str, Any]) -> str:
    """A challenge's outcome from its two parts (open, passed, failed, missed, none)."""
    parts = {challenge["service_status"], challenge["idle_status"]}
    for status in ("open", "failed", "missed"):
        if status in parts:
            return status
    return "passed"


async def challenges_page(request: web.Request) -> web.Response:
    chain = request.app[CONSOLE].native.service.chain
    found = await chain.query("audit.challenges", open_only=False, limit=CHALLENGES_SHOWN)
    rows = [
        [
            c["id"],
            cell(short(c["miner"]), title=c["miner"], kind="account"),
            c["created_at"],
            c["deadline"],
            "targeted" if c["targeted"] else "drawn",
            len(c["service_items"]),
            len(c["idle_items"]),
            c["service_status"],
            c["idle_status"],
            _state_cell(outcome(c)),
        ]
        for c in found
    ]
    body = table(
        [
            "Id",
            "Miner",
            "Started (block)",
            "Deadline (block)",
            "Kind",
            "Fragments",
            "Idle units",
            "Service proof",
            "Idle proof",
            "Outcome",
        ],
        rows,
        empty="No challenge yet.",
        name="challenges",
    )
    return _view(request, "challenges", "Challenges", body)


async def restoral_page(request: web.Request) -> web.Response:
    state = request.app[CONSOLE]
    chain = state.native.service.chain
    orders = await chain.query("file_bank.restoral_orders", limit=ORDERS_SHOWN)
    open_rows = [
        [
            cell(short(o["fid"]), title=o["fid"], kind="fid"),
            o["segment"],
            o["idx"],
            cell(short(o["origin"]), title=o["origin"], kind="account"),
            o["reason"],
            o["created_at"],
            "—" if o["claimer"] is None else cell(short(o["claimer"]), title=o["claimer"]),
            "—" if o["deadline"] is None else o["deadline"],
        ]
        for o in orders
    ]
    history = state.history
    event_rows = [
        [
            e.block,
            _state_cell(e.kind),
            cell(short(e.fid), title=e.fid, kind="fid"),
            e.segment,
            e.index,
            cell(short(e.origin), title=e.origin or "", kind="account"),
            cell(short(e.miner), title=e.miner or "", kind="account"),
            e.detail,
        ]
        for e in history.newest(EVENTS_SHOWN)
    ]
    counts = history.counts
    summary = render(
        '<p class="summary">Open orders: {open}. Since block {since}: {opened} opened, '
        "{completed} repairs completed, {lapsed} claims lapsed.{error}</p>",
        open=len(orders),
        since="—" if history.since is None else history.since,
        opened=counts["opened"],
        completed=counts["completed"],
        lapsed=counts["lapsed"],
        error=f" The chain's events are unreachable: {history.last_error}"
        if history.last_error
        else "",
    )
    body = join(
        [
            summary,
            Html("<h2>Open restoral orders</h2>"),
            table(
                [
                    "fid",
                    "Segment",
                    "Fragment",
                    "Lost from",
                    "Reason",
                    "Opened (block)",
                    "Claimed by",
                    "Claim ends (block)",
                ],
                open_rows,
                empty="No open restoral order: every fragment is where the chain expects it.",
                name="orders",
            ),
            Html("<h2>Repairs</h2>"),
            table(
                ["Block", "Event", "fid", "Segment", "Fragment", "From", "Onto", "Detail"],
                event_rows,
                empty="No restoral event seen since the gateway started.",
                name="repairs",
            ),
        ]
    )
    return _view(request, "restoral", "Restoral orders and repairs", body)


async def health_facts(request: web.Request) -> dict[str, Any]:
    """What ``GET /health`` says (docs/native-api.md §8), read the same way."""
    native = request.app[CONSOLE].native
    service = native.service
    reasons, best = [], None
    try:
        best = (await service.chain.head()).best_block
        positive = len(await service.directory.miners())
    except ChainError:
        reasons.append("chain unreachable")
        positive = 0
    if positive < service.params.data_shards:
        reasons.append(f"{positive} positive miners, fewer than k = {service.params.data_shards}")
    return {
        "status": "degraded" if reasons else "ok",
        "reasons": "; ".join(reasons) or "none",
        "gateway": native.gateway,
        "best_block": "—" if best is None else best,
        "chain_reachable": best is not None,
        "positive_miners": positive,
        "outbox_pending": service.index.count_names(PENDING),
        "unpaid_objects": service.index.count_names(UNPAID),
        "resume_sessions": native.resume.open_sessions(),
        "replay_cache_entries": len(native.auth.replay),
    }


def _metric_rows(request: web.Request) -> list[list[object]]:
    rows: list[list[object]] = []
    for family in request.app[CONSOLE].native.metrics.registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket") or sample.name.endswith("_created"):
                continue  # histogram buckets and creation times: the scrape has them
            labels = ", ".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            rows.append([sample.name, labels, f"{sample.value:g}", family.documentation])
    return rows


async def health_page(request: web.Request) -> web.Response:
    facts = await health_facts(request)
    status = render(
        '<p class="health health-{status}" id="health-status">Status: {status} '
        "(reasons: {reasons})</p>",
        status=facts["status"],
        reasons=facts["reasons"],
    )
    rows = [[name.replace("_", " "), value] for name, value in facts.items() if name != "reasons"]
    body = join(
        [
            status,
            table(["Fact", "Value"], rows, empty="", name="facts"),
            Html(
                '<h2>Metrics</h2>\n<p>The same registry <a href="/metrics">/metrics</a> serves.</p>'
            ),
            table(
                ["Series", "Labels", "Value", "Help"],
                _metric_rows(request),
                empty="No metric yet.",
                name="metrics",
            ),
        ]
    )
    return _view(request, "health", "Health and metrics", body)
