from __future__ import annotations

import subprocess
import sys

import pytest

import graphops


def test_importing_graphops_loads_no_langgraph_and_reads_no_environment() -> None:
    code = (
        "import os, sys; os.environ['GRAPHOPS_TOP_K'] = 'not a number'; import graphops; "
        "print('langgraph' in sys.modules, 'opentelemetry.sdk' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_public_names_resolve() -> None:
    from graphops.builder import build_observed_graph
    from graphops.policies import Ops

    assert graphops.build_observed_graph is build_observed_graph
    assert graphops.Ops is Ops
    for name in graphops.__all__:
        assert getattr(graphops, name) is not None
    from graphops import errors

    assert set(errors.__all__) <= set(graphops.__all__)  # the whole exception tree
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = graphops.nope  # type: ignore[attr-defined]


def test_the_resilience_names_resolve() -> None:
    import graphops.resilience as resilience

    assert set(resilience.__all__) == set(resilience._LAZY)
    for name in resilience.__all__:
        assert getattr(resilience, name).__name__ == name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        resilience.nope  # noqa: B018
