"""The run scope: one control record per run, opened and closed by a callback (scope.py)."""

from __future__ import annotations

from graphops.runtime.control import ScopeHandler, run_scope
from graphops.runtime.scope import Identity, RunEnd, RunScope, Usage

__all__ = ["Identity", "RunEnd", "RunScope", "ScopeHandler", "Usage", "run_scope"]
