"""The Kubernetes API over HTTP: one list page, one watch stream, and the API's errors.

Only what a list+watch loop needs, on aiohttp. A watch is a chunked HTTP response of one
JSON event per line; lines are split here rather than with `readline`, whose buffer limit a
large object (a ConfigMap, a Pod with many containers) can exceed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from meshplane.sources.kubeconfig import ClusterAccess

__all__ = ["ApiClient", "ApiError", "ResourceGone", "ResourceNotFound"]

_LIST_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)
# Past the server's own timeoutSeconds a silent watch connection is taken for dead.
_WATCH_GRACE_S = 30.0


class ApiError(Exception):
    """The API server answered with an error (or could not be understood)."""

    def __init__(self, code: int, reason: str, message: str, url: str = "") -> None:
        super().__init__(f"{url}: {code} {reason}: {message}" if url else f"{code} {reason}")
        self.code = code
        self.reason = reason
        self.message = message


class ResourceGone(ApiError):
    """410: the resourceVersion asked for is older than the server keeps; list again."""


class ResourceNotFound(ApiError):
    """404 on a collection: the server does not serve this resource (CRD not installed)."""


def api_error(code: int, status: Any, url: str) -> ApiError:
    """The exception for an HTTP status or a watch ERROR event's Status object."""
    status = status if isinstance(status, Mapping) else {}
    code = int(status.get("code") or code)
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or "")
    if code == 410:
        return ResourceGone(code, reason or "Gone", message, url)
    if code == 404:
        return ResourceNotFound(code, reason or "NotFound", message, url)
    return ApiError(code, reason or "Error", message, url)


class ApiClient:
    """A session to one API server with the credentials of a ClusterAccess."""

    def __init__(self, access: ClusterAccess) -> None:
        self.access = access
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            ssl_context = self.access.ssl_context()
            connector = aiohttp.TCPConnector(ssl=ssl_context if ssl_context else True)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"Accept": "application/json", "User-Agent": "meshplane"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _request_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {}
        token = self.access.bearer_token()
        if token:
            args["headers"] = {"Authorization": f"Bearer {token}"}
        if self.access.tls_server_name:
            args["server_hostname"] = self.access.tls_server_name
        return args

    async def list_page(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        """One page of a collection: {"metadata": {"resourceVersion", "continue"}, "items"}."""
        url = self.access.server + path
        session = self._get_session()
        async with session.get(
            url, params=dict(params), timeout=_LIST_TIMEOUT, **self._request_args()
        ) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise api_error(resp.status, _json_or_none(body), url)
        doc = _json_or_none(body)
        if not isinstance(doc, dict) or not isinstance(doc.get("items", []), list):
            raise ApiError(resp.status, "BadResponse", "a list response is not a JSON list", url)
        return doc

    async def create(
        self, path: str, body: Mapping[str, Any], *, timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """POST `body` to a collection (a TokenReview, ...); the server's answer."""
        url = self.access.server + path
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with self._get_session().post(
            url, json=dict(body), timeout=timeout, **self._request_args()
        ) as resp:
            answer = _json_or_none(await resp.read())
            if resp.status not in (200, 201):
                raise api_error(resp.status, answer, url)
        if not isinstance(answer, dict):
            raise ApiError(resp.status, "BadResponse", "the answer is not a JSON object", url)
        return answer

    async def watch(
        self, path: str, params: Mapping[str, str], timeout_s: float
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events (ADDED, MODIFIED, DELETED, BOOKMARK) until the server ends the stream.

        An ERROR event raises its ApiError (ResourceGone for 410).
        """
        url = self.access.server + path
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=10, sock_read=timeout_s + _WATCH_GRACE_S
        )
        query = {**params, "watch": "1", "timeoutSeconds": str(max(1, int(timeout_s)))}
        session = self._get_session()
        async with session.get(url, params=query, timeout=timeout, **self._request_args()) as resp:
            if resp.status != 200:
                raise api_error(resp.status, _json_or_none(await resp.read()), url)
            pending = b""
            async for chunk in resp.content.iter_any():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _watch_event(line, url)
            if pending.strip():
                yield _watch_event(pending, url)


def _watch_event(line: bytes, url: str) -> dict[str, Any]:
    event = _json_or_none(line)
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        raise ApiError(200, "BadResponse", "a watch line is not a JSON event", url)
    if event.get("type") == "ERROR":
        raise api_error(500, event["object"], url)
    return event


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None
