"""Read meshplane's debug API over HTTP for `proxy-status` and `proxy-config`."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

__all__ = ["DEFAULT_ADDRESS", "DebugApiError", "fetch_json"]

DEFAULT_ADDRESS = "127.0.0.1:15014"
TIMEOUT_S = 10.0


class DebugApiError(Exception):
    """The debug API could not be reached or refused the request; str() says why."""


def fetch_json(address: str, path: str, **query: str) -> Any:
    """GET http://ADDRESS/PATH?QUERY and decode the JSON body."""
    url = f"http://{address}{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        raise DebugApiError(f"{_error_text(exc)} (HTTP {exc.code} from {url})") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DebugApiError(
            f"cannot reach the meshplane debug API at http://{address} ({reason}); "
            "is `meshplane serve` running? (--meshplane-address)"
        ) from None
    except json.JSONDecodeError as exc:
        raise DebugApiError(f"{url}: not JSON: {exc}") from None


def _error_text(exc: urllib.error.HTTPError) -> str:
    body = exc.read().decode(errors="replace")
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.strip() or str(exc.reason)
