"""Observing runs: for now per-node timings; spans, metrics and logs come next."""

from __future__ import annotations

from graphops.observe.timing import NodeTimer, NodeTiming

__all__ = ["NodeTimer", "NodeTiming"]
