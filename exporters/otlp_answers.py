"""What a collector answers an OTLP/HTTP export: the spans it rejected in a partial success, read and said.

OTLP lets a collector keep part of a batch and answer 200 all the same, with ``partial_success``: how many
spans it rejected (``rejected_spans``: over its limits, too old, a tenant over its quota) and why. The SDK's
exporter (opentelemetry-exporter-otlp-proto-http) takes any 2xx as the whole batch exported and never reads
the answer's body, so rejected spans were counted as exported and nothing said so. Here a ``requests``
response hook reads the answer of each export; ``span_export`` counts the rejected spans as such.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import requests
from google.protobuf.message import DecodeError
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from gpuwarden.printable import escape_controls

logger = logging.getLogger("exporters.span_export")  # said with the other lines of span export

MAX_MESSAGE = 500  # characters of a collector's error message logged: its text, not ours


class PartialSuccessReader:
    """A ``requests`` response hook: the ``partial_success`` of the last 2xx answer of each thread (an export
    runs in one thread, the batch worker's or a flush's), as ``(rejected spans, error message)``."""

    def __init__(self) -> None:
        self._local = threading.local()

    def __call__(self, response: requests.Response, *args: object, **kwargs: object) -> None:
        """Read the answer of one request (a retried export's failed tries answer no 2xx)."""
        if 200 <= response.status_code < 300:
            self._local.answer = partial_success(response.content)

    def take(self) -> tuple[int, str]:
        """The last answer read in this thread, forgotten once taken; ``(0, "")`` where none was."""
        answer: tuple[int, str] = getattr(self._local, "answer", (0, ""))
        self._local.answer = (0, "")
        return answer


def partial_success(body: bytes) -> tuple[int, str]:
    """The rejected spans and the error message of an ``ExportTraceServiceResponse`` (in protobuf, as OTLP
    answers a protobuf export); ``(0, "")`` for an empty body, or one that is no such answer (a proxy's
    ``OK``): nothing is known to have been rejected."""
    if not body:
        return 0, ""
    try:
        answer = ExportTraceServiceResponse.FromString(body)
    except DecodeError:
        return 0, ""
    part = answer.partial_success
    return max(0, part.rejected_spans), part.error_message


class AccountedOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter, which also reads what the collector rejected (``take_rejected``)
    and says it: once, and again each time the collector's reason changes."""

    def __init__(self, endpoint: str, timeout: float) -> None:
        self._answers = PartialSuccessReader()
        session = requests.Session()
        session.hooks["response"].append(self._answers)
        super().__init__(endpoint=endpoint, timeout=timeout, session=session)
        self._rejected = threading.local()
        self._said: str | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export one batch; where the collector answered a partial success, keep and say what it rejected."""
        self._answers.take()  # an earlier answer in this thread is not this export's
        result = super().export(spans)
        rejected, message = self._answers.take()
        if result is not SpanExportResult.SUCCESS:
            rejected, message = 0, ""
        self._rejected.count = min(rejected, len(spans))
        if rejected or message:
            self._say(self._rejected.count, len(spans), message)
        return result

    def take_rejected(self) -> int:
        """The spans the collector rejected of this thread's last export, forgotten once taken."""
        count: int = getattr(self._rejected, "count", 0)
        self._rejected.count = 0
        return count

    def _say(self, rejected: int, n: int, message: str) -> None:
        shown = escape_controls(message[:MAX_MESSAGE]) or "no reason given"
        if shown == self._said:
            return  # counted all the same: a collector rejecting every batch is one line, not one a batch
        self._said = shown
        if rejected:
            logger.warning(
                "span export: the collector rejected %d of %d spans (OTLP partial success): %s; counted in"
                ' _trace_spans_total{outcome="rejected"}, said again when its reason changes',
                rejected,
                n,
                shown,
                extra={"rejected_spans": rejected},
            )
        else:
            logger.warning("span export: the collector took every span and warns: %s", shown)
