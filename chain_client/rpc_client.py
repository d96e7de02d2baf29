"""``HttpChain``: the ``Chain`` contract over the node's JSON RPC (docs/chain.md)."""

from typing import Any

import aiohttp

from chain_client.errors import ChainUnavailable, InvalidArguments, Rejected, UnknownCall
from chain_client.extrinsic import Extrinsic
from chain_client.params import Genesis
from chain_client.protocol import EventPage, ExtrinsicResult, Head

__all__ = ["HttpChain"]


class HttpChain:
    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._genesis: tuple[bytes, Genesis] | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        timeout: float | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, Any]:
        try:
            async with self._client().request(
                method,
                self.url + path,
                json=body,
                params=params,
                timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
            ) as response:
                payload = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ChainUnavailable(f"{method} {self.url}{path}: {exc!r}") from exc
        if status in ok:
            return status, payload
        error = payload.get("error", {}) if isinstance(payload, dict) else {}
        code, message = error.get("code", f"HTTP{status}"), error.get("message", str(payload))
        if status >= 500 and code != "PoolFull":
            raise ChainUnavailable(f"{method} {path}: {status} {message}")
        raise Rejected(str(code), str(message))

    async def genesis(self) -> tuple[bytes, Genesis]:
        if self._genesis is None:
            _, body = await self._call("GET", "/genesis")
            self._genesis = bytes.fromhex(body["hash"][2:]), Genesis.from_json(body["genesis"])
        return self._genesis

    async def head(self) -> Head:
        _, body = await self._call("GET", "/health")
        return Head(int(body["best_block"]), str(body["best_hash"]))

    async def next_nonce(self, account: str) -> int:
        _, body = await self._call("GET", f"/nonce/{account}")
        return int(body["nonce"])

    async def submit(self, extrinsic: Extrinsic) -> str:
        _, body = await self._call("POST", "/extrinsic", body=extrinsic.to_json(), ok=(202,))
        return str(body["hash"])

    async def submit_and_wait(
        self, extrinsic: Extrinsic, *, timeout: float = 60.0
    ) -> ExtrinsicResult:
        status, body = await self._call(
            "POST",
            "/extrinsic",
            body=extrinsic.to_json(),
            params={"wait": "1", "timeout": str(timeout)},
            timeout=timeout + 10,
            ok=(200, 202),
        )
        if status == 202:
            raise TimeoutError(f"{body['hash']} not included within {timeout} s")
        return ExtrinsicResult.from_json(body)

    async def receipt(self, tx_hash: str) -> ExtrinsicResult | None:
        try:
            _, body = await self._call("GET", f"/extrinsic/{tx_hash}")
        except Rejected as exc:
            if exc.code == "NotIncluded":
                return None
            raise
        return ExtrinsicResult.from_json(body)

    async def query(self, name: str, /, **args: Any) -> Any:
        try:
            _, body = await self._call("POST", "/query", body={"name": name, "args": args})
        except Rejected as exc:
            # The same exceptions as the in-process chain raises.
            if exc.code == "UnknownQuery":
                raise UnknownCall(name) from None
            if exc.code == "InvalidArguments":
                raise InvalidArguments(name, exc.message) from None
            raise
        return body["result"]

    async def block(self, height: int, *, header_only: bool = False) -> dict[str, Any] | None:
        path = f"/block/{height}" + ("?header=1" if header_only else "")
        try:
            _, body = await self._call("GET", path)
        except Rejected as exc:
            if exc.code == "NoSuchBlock":
                return None
            raise
        block: dict[str, Any] = body
        return block

    async def events(
        self, from_height: int, *, timeout: float = 0.0, max_blocks: int = 100
    ) -> EventPage:
        _, body = await self._call(
            "GET",
            "/events",
            params={
                "from": str(from_height),
                "timeout": str(timeout),
                "max_blocks": str(max_blocks),
            },
            timeout=timeout + self.timeout,
        )
        return EventPage(tuple(body["events"]), int(body["next"]))

    async def produce_block(self) -> int:
        try:
            _, body = await self._call("POST", "/dev/produce_block")
        except Rejected as exc:
            if exc.code == "NotFound":
                raise Rejected("DevOnly", "this node is not a dev network") from None
            raise
        return int(body["height"])
