"""A stand-in OpenTelemetry collector: OTLP/HTTP (protobuf) traces and metrics on 127.0.0.1, kept as plain dicts."""

from __future__ import annotations

import gzip
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from orchestrator.bench.providers._loopback import LoopbackServer


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


class OtlpCollector(LoopbackServer):
    """Receives what our exporters send (`/v1/traces`, `/v1/metrics`) and keeps it.

    Attributes:
        spans: ``{name, trace, id, parent, attributes}`` per span (ids in hex; ``parent`` None for a root).
        points: ``{name, attributes, count, sum, value}`` per metric data point (histograms have count and
            sum, counters and gauges a value).
    """

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[dict[str, Any]] = []
        self.points: list[dict[str, Any]] = []

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/metrics", self._metrics)

    @staticmethod
    async def _body(request: web.Request) -> bytes:
        body = await request.read()
        return gzip.decompress(body) if request.headers.get("Content-Encoding") == "gzip" else body

    async def _traces(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await self._body(request))
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        {
                            "name": span.name,
                            "trace": span.trace_id.hex(),
                            "id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex() or None,
                            "attributes": _attributes(span.attributes),
                        }
                    )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf"
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        export = ExportMetricsServiceRequest()
        export.ParseFromString(await self._body(request))
        for resource in export.resource_metrics:
            # Each process's cumulative series are its own: the resource's instance id tells them apart.
            instance = _attributes(resource.resource.attributes).get("service.instance.id", "")
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    kind = metric.WhichOneof("data")
                    for point in getattr(metric, kind).data_points if kind else ():
                        entry: dict[str, Any] = {
                            "name": metric.name,
                            "instance": instance,
                            "attributes": _attributes(point.attributes),
                        }
                        if kind in ("histogram", "exponential_histogram"):
                            entry.update(count=point.count, sum=point.sum)
                        else:
                            entry["value"] = _value_of(point)
                        self.points.append(entry)
        return web.Response(
            body=ExportMetricsServiceResponse().SerializeToString(), content_type="application/x-protobuf"
        )


def _value_of(point: Any) -> float:
    return float(point.as_int if point.WhichOneof("value") == "as_int" else point.as_double)
