"""Structured logs: one line per event, JSON by default, on the ``graphops`` logger.

Every event the telemetry pipeline records (run start/end, node end, LLM call,
retrieval, routing decision, step outcome) is logged with the ids of its span, so a
log store can jump from a line to its trace. graphops never configures logging on
import; :func:`configure_logging` is for applications and the CLI.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Literal

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging", "logger"]

logger = logging.getLogger("graphops")
"""The logger every event goes to (``graphops``); its events carry ``record.graphops``."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update(getattr(record, "graphops", None) or {})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``event key=value …`` for reading in a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "graphops", None) or {}
        pairs = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        return f"{record.levelname.lower():<5} {record.getMessage()} {pairs}".rstrip()


_installed: list[logging.Handler] = []


def configure_logging(
    format: Literal["json", "text"] = "json", level: int | str = logging.INFO
) -> logging.Handler:
    """Send graphops events to stderr in ``format``; calling it again replaces the handler."""
    for old in _installed:
        logger.removeHandler(old)
    _installed.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    _installed.append(handler)
    return handler
