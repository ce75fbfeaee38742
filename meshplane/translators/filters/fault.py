"""`envoy.filters.http.fault`: VirtualService `fault` (delay and abort) as per-route config.

The HCM carries the filter with an empty config, which injects nothing; each route with a
`fault` overrides it through `typed_per_filter_config` (Istio's shape). Percentages become
FractionalPercent per million; an unset percentage is left unset, as Istio leaves it.
"""

from __future__ import annotations

from envoy.extensions.filters.http.fault.v3.fault_pb2 import FaultAbort, HTTPFault
from envoy.type.v3.percent_pb2 import FractionalPercent

from meshplane.api.networking.virtual_service import FaultAbort as FaultAbortSpec
from meshplane.api.networking.virtual_service import HTTPFaultInjection
from meshplane.api.parsers.http_route import GRPC_STATUS
from meshplane.translators.protos import duration

NAME = "envoy.filters.http.fault"


def per_million(percent: float) -> FractionalPercent:
    """Istio's translatePercentToFractionalPercent: 0-100 with four decimals kept."""
    return FractionalPercent(
        numerator=round(percent * 10000), denominator=FractionalPercent.MILLION
    )


def hcm_config() -> HTTPFault:
    """The filter as it sits in the HCM: no fault until a route says so."""
    return HTTPFault()


def _abort(abort: FaultAbortSpec) -> FaultAbort | None:
    out = FaultAbort()
    if abort.http_status is not None:
        out.http_status = abort.http_status
    elif abort.grpc_status in GRPC_STATUS:
        out.grpc_status = GRPC_STATUS[abort.grpc_status]
    else:
        return None
    if abort.percentage is not None:
        out.percentage.CopyFrom(per_million(abort.percentage))
    return out


def route_config(fault: HTTPFaultInjection) -> HTTPFault | None:
    """The per-route override for a VirtualService `fault`; None when it injects nothing."""
    out = HTTPFault()
    if fault.delay is not None:
        out.delay.fixed_delay.CopyFrom(duration(fault.delay.fixed_delay))
        if fault.delay.percentage is not None:
            out.delay.percentage.CopyFrom(per_million(fault.delay.percentage))
    abort = _abort(fault.abort) if fault.abort is not None else None
    if abort is not None:
        out.abort.CopyFrom(abort)
    if not out.HasField("delay") and not out.HasField("abort"):
        return None
    return out
