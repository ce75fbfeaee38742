"""Bookinfo's four services in one small program, so the local mesh has real apps to route.

`python -m meshplane.local.bookinfo_app --service reviews --version v2 --port 9080`
serves what Istio's bookinfo service of that name serves (productpage's HTML page, details,
reviews and ratings JSON) and calls the others the way bookinfo does: productpage calls
details and reviews; reviews v2/v3 call ratings. Calls go to `http://NAME:9080` as in
Kubernetes (in a pod with iptables, its sidecar captures them), or, given `--mesh-address`
(a sidecar's outbound listener without iptables, or a gateway), there with
`Host: NAME.NAMESPACE.svc.cluster.local`, so every hop is routed by Envoy, never directly.
`--direct details=127.0.0.1:9081,...` is the no-mesh baseline (bench/issue5.py): calls go
straight to the given app addresses, no proxy at all.
`meshplane up` passes the pod's addresses in the environment (POD_LOOPBACK, POD_OUTBOUND)
when it runs pods without iptables.
"""

from __future__ import annotations

import argparse
import html
import http.client
import json
import logging
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("bookinfo")

STARS = {"v1": None, "v2": "black", "v3": "red"}


class Mesh:
    """Where calls to other services go, and the headers that make Envoy route them."""

    def __init__(
        self,
        address: str | None,
        namespace: str,
        timeout: float = 3.0,
        direct: dict[str, tuple[str, int]] | None = None,
    ) -> None:
        self.address = address
        self.namespace = namespace
        self.timeout = timeout
        self.direct = direct or {}

    def _target(self, service: str) -> tuple[str, int, str]:
        """(host, port, Host header) of a call to `service`."""
        if service in self.direct:
            direct_host, direct_port = self.direct[service]
            return direct_host, direct_port, f"{service}:9080"
        if not self.address:
            return service, 9080, f"{service}:9080"
        host, sep, port = self.address.partition(":")
        fqdn = f"{service}.{self.namespace}.svc.cluster.local"
        return host or "127.0.0.1", int(port) if sep else 9080, f"{fqdn}:9080"

    def get_json(self, service: str, path: str, headers: dict[str, str]) -> tuple[int, Any]:
        """GET http://SERVICE:9080/PATH through the mesh; returns (status, decoded body)."""
        host, port, authority = self._target(service)
        conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        try:
            conn.request("GET", path, headers={"Host": authority, **headers})
            resp = conn.getresponse()
            body = resp.read()
            try:
                return resp.status, json.loads(body)
            except ValueError:
                return resp.status, {"error": body.decode(errors="replace")[:200]}
        except OSError as exc:
            return 503, {"error": f"{service} unreachable: {exc}"}
        finally:
            conn.close()


# Headers bookinfo propagates so a trace and a user's routing follow the request.
PROPAGATE = (
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "traceparent",
    "tracestate",
    "end-user",
    "cookie",
)


def make_handler(service: str, version: str, mesh: Mesh) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to one service identity."""

    class Handler(BaseHTTPRequestHandler):
        server_version = f"bookinfo-{service}/{version}"

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("%s %s", service, fmt % args)

        def send_body(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-bookinfo-version", f"{service}-{version}")
            self.end_headers()
            self.wfile.write(body)

        def send_json(self, status: int, obj: Any) -> None:
            self.send_body(status, json.dumps(obj).encode(), "application/json")

        def do_GET(self) -> None:
            fwd = {h: v for h in PROPAGATE if (v := self.headers.get(h))}
            path = self.path.split("?")[0]
            if path in ("/health", "/healthz"):
                self.send_json(200, {"status": "ok"})
            elif service == "productpage" and path in ("/", "/productpage"):
                self.send_body(200, productpage_html(mesh, fwd).encode(), "text/html")
            elif service == "details" and path.startswith("/details/"):
                self.send_json(200, details(path))
            elif service == "ratings" and path.startswith("/ratings/"):
                self.send_json(200, {"id": path.rsplit("/", 1)[-1], "ratings": RATINGS})
            elif service == "reviews" and path.startswith("/reviews/"):
                body = reviews(version, mesh, fwd)
                # Who called, as the sidecar vouches for it (mTLS peer's SPIFFE ID in XFCC).
                if xfcc := self.headers.get("x-forwarded-client-cert"):
                    body["caller"] = xfcc
                self.send_json(200, body)
            else:
                self.send_json(404, {"error": f"{service} has no {path}"})

    return Handler


RATINGS = {"Reviewer1": 5, "Reviewer2": 4}


def details(path: str) -> dict[str, Any]:
    return {
        "id": path.rsplit("/", 1)[-1],
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
    }


def reviews(version: str, mesh: Mesh, fwd: dict[str, str]) -> dict[str, Any]:
    color = STARS.get(version)
    ratings: dict[str, Any] = {}
    if color:
        status, body = mesh.get_json("ratings", "/ratings/0", fwd)
        ratings = body.get("ratings", {}) if status == 200 else {"error": body.get("error")}
    items = []
    for reviewer, text in (
        ("Reviewer1", "An extremely entertaining play by Shakespeare."),
        ("Reviewer2", "Absolutely fun and entertaining."),
    ):
        item: dict[str, Any] = {"reviewer": reviewer, "text": text}
        if color:
            item["rating"] = {"stars": ratings.get(reviewer), "color": color}
        items.append(item)
    return {"id": "0", "podname": f"reviews-{version}", "reviews": items}


def productpage_html(mesh: Mesh, fwd: dict[str, str]) -> str:
    d_status, d = mesh.get_json("details", "/details/0", fwd)
    r_status, r = mesh.get_json("reviews", "/reviews/0", fwd)
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in d.items())
    if r_status == 200:
        revs = "".join(
            f"<blockquote><p>{x['text']}</p><small>{x['reviewer']}</small>"
            + (
                f" <span class='stars' style='color:{x['rating']['color']}'>"
                f"{'&#9733;' * int(x['rating']['stars'] or 0)}</span>"
                if "rating" in x
                else ""
            )
            + "</blockquote>"
            for x in r["reviews"]
        )
        served_by = r.get("podname", "?")
        if "caller" in r:
            revs += f"<p id='reviews-caller'>reviews saw caller: {html.escape(r['caller'])}</p>"
    else:
        revs = (
            f"<p class='error'>Sorry, product reviews are currently unavailable ({r_status}).</p>"
        )
        served_by = "none"
    return (
        "<!doctype html><html><head><title>Simple Bookstore App</title></head><body>"
        "<h1>The Comedy of Errors</h1>"
        f"<h2>Book Details ({d_status})</h2><table>{rows}</table>"
        f"<h2>Book Reviews</h2>{revs}"
        f"<p id='reviews-version'>reviews served by: {served_by}</p>"
        "</body></html>\n"
    )


def parse_direct(text: str) -> dict[str, tuple[str, int]]:
    """`details=127.0.0.1:9081,reviews=...` -> {"details": ("127.0.0.1", 9081), ...}."""
    out: dict[str, tuple[str, int]] = {}
    for item in filter(None, text.split(",")):
        name, _, address = item.partition("=")
        host, _, port = address.rpartition(":")
        if not name or not host or not port.isdigit():
            raise argparse.ArgumentTypeError(f"{item!r}: expected SERVICE=HOST:PORT")
        out[name.strip()] = (host, int(port))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--service", required=True, choices=["productpage", "details", "reviews", "ratings"]
    )
    p.add_argument("--version", default="v1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bind", default=os.environ.get("POD_LOOPBACK", "0.0.0.0"))
    p.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "default"))
    p.add_argument(
        "--mesh-address",
        default=os.environ.get("POD_OUTBOUND") or None,
        help="HOST[:PORT] where calls to services go (default: the service's name)",
    )
    p.add_argument(
        "--direct",
        type=parse_direct,
        default={},
        metavar="SERVICE=HOST:PORT,...",
        help="call these services at these addresses, bypassing any mesh (a no-mesh baseline)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    mesh = Mesh(args.mesh_address, args.namespace, direct=args.direct)
    server = ThreadingHTTPServer(
        (args.bind, args.port), make_handler(args.service, args.version, mesh)
    )
    server.daemon_threads = True

    def stop(*_: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("%s %s listening on %s:%d", args.service, args.version, args.bind, args.port)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
