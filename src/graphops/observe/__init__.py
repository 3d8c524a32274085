"""Observing runs: one telemetry pipeline for spans, metrics and JSON logs.

:class:`Telemetry` holds the pipeline; its callback handler is the single event
source. Modules load lazily so importing graphops pulls in no exporter.
"""

from __future__ import annotations

from graphops.observe.logs import configure_logging
from graphops.observe.metrics import Metrics, metrics_app, start_metrics_server
from graphops.observe.pricing import Price, PriceTable
from graphops.observe.telemetry import Telemetry, default_telemetry

__all__ = [
    "Metrics",
    "Price",
    "PriceTable",
    "Telemetry",
    "configure_logging",
    "default_telemetry",
    "metrics_app",
    "start_metrics_server",
]
