"""Re-running a stored thread from a checkpoint: LangGraph time travel, recorded as a new run.

:func:`arerun` forks the thread at a checkpoint (before a node, or by id, or the
start of its latest run), optionally changes state there (``aupdate_state``), and
runs on from the fork with ``ainvoke(None, …)``. The new run's root span carries
``graphops.replay_of`` with the original run's trace id. :class:`Rerun` compares
the two runs' outcomes and node sequences.

The fork is always one of the original run's own checkpoints, so the diff compares
the re-run with the run it forked; and only the graph that wrote the original run
may re-run it (its name is on the run's spans), so no other graph's state is ever
written into the thread.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
from langgraph.errors import InvalidUpdateError
from langgraph.types import Command

from graphops._compat.langgraph import is_state_channel
from graphops.checkpoint.replay import ReplayRun, written_ns
from graphops.errors import InvalidInputError
from graphops.observe import semconv as sc
from graphops.prompts.refs import check_name, parse_ref
from graphops.prompts.source import PROMPT_OVERRIDES_KEY, PromptSource
from graphops.steps.channel import OPS_KEY
from graphops.steps.names import TAIL_NODE

__all__ = [
    "Fork",
    "Rerun",
    "arerun",
    "choose_fork",
    "ended_at",
    "original_of",
    "parse_prompt_pins",
    "parse_updates",
]


@dataclass(frozen=True)
class Fork:
    """Where a re-run starts: a checkpoint, the step it closed, and what runs next."""

    config: dict[str, Any]
    checkpoint_id: str
    step: int
    next: tuple[str, ...]


@dataclass(frozen=True)
class Rerun:
    """A re-run and the run it repeats, side by side."""

    fork: Fork
    original_trace_id: str
    original_state: dict[str, Any]
    state: dict[str, Any]
    original_nodes: list[str]
    nodes: list[str]
    original_prompts: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()

    def _prompt_lines(self) -> list[str]:
        """``prompts: answer@1 → answer@2`` for each prompt the re-run used another version of.

        Compared as sets per prompt name, only for the prompts the re-run used: a
        re-run from a later node uses fewer prompts, and that is no change.
        """
        if not self.prompts:
            return []

        def versions(refs: tuple[str, ...]) -> dict[str, set[str]]:
            out: dict[str, set[str]] = {}
            for ref in refs:
                out.setdefault(ref.rpartition("@")[0] or ref, set()).add(ref)
            return out

        old, new = versions(self.original_prompts), versions(self.prompts)
        changed = [name for name in new if old.get(name, set()) != new[name]]
        if not changed:
            return ["prompts: same"]
        before = [r for r in self.original_prompts if (r.rpartition("@")[0] or r) in changed]
        after = [r for r in self.prompts if (r.rpartition("@")[0] or r) in changed]
        return [f"prompts: {' '.join(dict.fromkeys(before)) or '-'} → {' '.join(after)}"]

    def diff(self, keys: tuple[str, ...] = ("answer", "sources")) -> str:
        """What changed: the chosen state keys, then the node sequence."""
        lines = []
        for key in keys:
            old, new = self.original_state.get(key), self.state.get(key)
            if old == new:
                lines.append(f"{key}: same")
                continue
            lines.append(f"{key}: changed")
            old_text = json.dumps(old, indent=1, default=str).splitlines()
            new_text = json.dumps(new, indent=1, default=str).splitlines()
            lines += [
                f"  {line}"
                for line in difflib.unified_diff(
                    old_text, new_text, "original", "re-run", lineterm="", n=1
                )
            ]
        lines += self._prompt_lines()
        # the tail is graphops' bookkeeping for a run that starts past the head, as a
        # re-run does: no node of the graph's own, so not a difference
        original = [n for n in self.original_nodes if n != TAIL_NODE]
        nodes = [n for n in self.nodes if n != TAIL_NODE]
        same = original[-len(nodes) :] == nodes if nodes else False
        lines.append("nodes: " + ("same as the original from the fork" if same else "changed"))
        if not same:
            lines += [
                f"  original: {' → '.join(original)}",
                f"  re-run:   {' → '.join(nodes)}",
            ]
        return "\n".join(lines)


def parse_prompt_pins(pairs: list[str]) -> dict[str, int | str]:
    """``["answer=3", "route=staging"]`` → ``{"answer": 3, "route": "staging"}``."""
    pins: dict[str, int | str] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        ref = parse_ref(raw) if sep and raw.strip() else None
        if ref is None:
            raise InvalidInputError(f"--prompt takes NAME=VERSION (or NAME=LABEL), not {pair!r}")
        pins[check_name(name.strip())] = ref
    return pins


def parse_updates(pairs: list[str]) -> dict[str, Any]:
    """``["k=v", …]``: values are JSON when they parse as JSON, else plain strings."""
    updates: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"--set takes key=value, not {pair!r}")
        try:
            updates[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            updates[key.strip()] = raw
    return updates


def ended_at(run: ReplayRun) -> datetime:
    """When ``run`` ended (its last span), as the checkpoints' clock reads it."""
    return datetime.fromtimestamp(max(s.end_ns for s in run.spans) / 1e9, UTC)


async def choose_fork(
    app: Any,
    thread_id: str,
    start: str | None,
    before: datetime | None = None,
    *,
    within: ReplayRun | None = None,
) -> Fork:
    """The fork: before node ``start``, at checkpoint id ``start``, or the run's start.

    ``within`` (the run a re-run repeats and is compared with) limits the choice to
    that run's own checkpoints: never an earlier run's, nor a later re-run's.
    ``before`` is the older form of the same limit: checkpoints written up to then.
    """
    thread = [s async for s in app.aget_state_history({"configurable": {"thread_id": thread_id}})]
    history = thread
    if before is not None:
        history = [
            s
            for s in history
            if s.created_at is None or datetime.fromisoformat(s.created_at) <= before
        ]
    if within is not None:
        history = [
            s for s in history if s.created_at is None or within.owns(written_ns(s.created_at))
        ]
    if not history:
        raise InvalidInputError(f"thread {thread_id!r} has no checkpoints to re-run from")

    def fork(snapshot: Any) -> Fork:
        configurable = snapshot.config["configurable"]
        return Fork(
            snapshot.config,
            configurable["checkpoint_id"],
            int(snapshot.metadata.get("step", -1)),
            tuple(snapshot.next),
        )

    if start is None:  # the newest input checkpoint: the run, from its start
        found = next((s for s in history if s.metadata.get("source") == "input"), history[-1])
        return fork(found)
    for snapshot in history:  # newest first: the latest time ``start`` was about to run
        if start in snapshot.next or snapshot.config["configurable"]["checkpoint_id"] == start:
            return fork(snapshot)
    if within is not None:
        _not_in_run(start, within, thread)
    nodes = sorted({n for s in history for n in s.next})
    raise InvalidInputError(
        f"--from {start!r} is neither a node about to run in this thread ({', '.join(nodes)}) "
        "nor one of its checkpoint ids"
    )


def _not_in_run(start: str, run: ReplayRun, thread: list[Any]) -> None:
    """Refuse a ``--from`` found only in another run: the re-run is compared with ``run``."""
    which = (
        f"run {run.trace_id} (the thread's latest run that is not a re-run, which the "
        "re-run is compared with)"
    )
    if any(s.config["configurable"]["checkpoint_id"] == start for s in thread):
        raise InvalidInputError(
            f"--from {start!r}: that checkpoint belongs to another run than {which}; "
            "fork at one of that run's checkpoints, or before a node it ran (--from NODE)"
        )
    if any(start in s.next for s in thread):
        ran = [
            x.name for x in sorted(run.spans, key=lambda x: x.start_ns) if sc.NODE in x.attributes
        ]
        raise InvalidInputError(
            f"--from {start!r}: {which} did not reach {start!r}; it ran "
            f"{', '.join(ran) or 'no node'}. Fork before one of those"
        )


def original_of(runs: list[ReplayRun]) -> ReplayRun:
    """The run a re-run repeats: the thread's latest run that is not itself a re-run."""
    plain = [
        r
        for r in runs
        if any(sc.NODE in s.attributes for s in r.spans)
        and not any(sc.REPLAY_OF in s.attributes for s in r.spans)
    ]
    return (plain or runs)[-1]


async def _final_state(app: Any, thread_id: str, original: ReplayRun) -> dict[str, Any]:
    """The state the original run ended with: the last checkpoint written in its time.

    Forks reuse step numbers, so the step alone is ambiguous; the checkpoint's time
    decides (a re-run's checkpoints are all written after the original ended).
    """
    async for snapshot in app.aget_state_history({"configurable": {"thread_id": thread_id}}):
        if snapshot.created_at is not None and original.owns(written_ns(snapshot.created_at)):
            return dict(snapshot.values)
    return {}


def _check_graph(app: Any, original: ReplayRun) -> None:
    """Only the graph that wrote the original run may re-run it: never another's state."""
    name = getattr(app, "name", None)
    wrote = original.graph
    if wrote is None:
        raise InvalidInputError(
            f"cannot tell which graph wrote run {original.trace_id}: its spans carry no "
            f"{sc.AGENT_NAME}, so it is not re-run (a re-run by another graph would write "
            "that graph's state into the thread)"
        )
    if wrote != name:
        raise InvalidInputError(
            f"run {original.trace_id} was written by graph {wrote!r}, not {name!r}: re-run it "
            f"with that graph (build_observed_graph(..., name={wrote!r})) on the thread's "
            "checkpointer"
        )


def _check_keys(app: Any, updates: Mapping[str, Any]) -> None:
    """``--set`` names only keys of the graph's state (LangGraph would ignore the others)."""
    keys = sorted(k for k in getattr(app, "channels", {}) if is_state_channel(k))
    unknown = [k for k in updates if k not in keys or k == OPS_KEY]
    if unknown:
        settable = ", ".join(k for k in keys if k != OPS_KEY)
        raise InvalidInputError(f"--set: the state has no key {unknown[0]!r}; its keys: {settable}")


async def _edit_at(app: Any, fork: Fork, updates: dict[str, Any]) -> Any:
    """Change the state at the fork and keep what runs next.

    LangGraph applies an edit as the node that wrote the checkpoint and re-runs that
    node's edges to decide what is next; a node that routed with ``Command(goto=…)``
    (graphops' head, or one of yours) has no edges to re-run, so its edit would
    leave nothing to run. Such a node's edit says where to go itself.
    """
    snapshot = await app.aget_state(fork.config)
    parent = snapshot.parent_config
    writers = tuple((await app.aget_state(parent)).next) if parent else ()
    spec = app.builder.nodes.get(writers[0]) if len(writers) == 1 else None
    if spec is not None and spec.ends and fork.next:
        edit = Command(update=updates, goto=list(fork.next))
        return await app.aupdate_state(fork.config, edit, as_node=writers[0])
    return await app.aupdate_state(fork.config, updates)


async def arerun(
    app: Any,
    thread_id: str,
    original: ReplayRun,
    *,
    start: str | None = None,
    updates: Mapping[str, Any] | None = None,
    prompts: Mapping[str, int | str] | None = None,
    prompt_source: PromptSource | None = None,
) -> Rerun:
    """Fork ``thread_id`` and run ``app`` on from the fork; ``app`` must use the thread's saver.

    ``app`` must be the graph that wrote ``original`` (the same ``name``), and
    ``updates`` may set only keys of its state; the fork is one of ``original``'s own
    checkpoints (``start`` is looked for in that run only).

    ``prompts`` pins prompt versions for the re-run (``{"answer": 3}``), through the
    run config that :func:`graphops.prompts.aprompt` reads. Each pin is looked up in
    ``prompt_source`` (the graph's) first, so an unknown version forks nothing.
    """
    if prompts:
        if prompt_source is None:
            raise InvalidInputError(
                "pinning prompts needs prompt_source=, to check the versions before the fork"
            )
        for name, ref in prompts.items():
            await anyio.to_thread.run_sync(prompt_source.resolve, name, ref)
    _check_graph(app, original)
    if updates:
        _check_keys(app, updates)
    fork = await choose_fork(app, thread_id, start, within=original)
    original_state = await _final_state(app, thread_id, original)
    original_nodes = [
        s.name
        for s in sorted(original.spans, key=lambda s: s.start_ns)
        if sc.NODE in s.attributes and int(s.attributes.get(sc.STEP, -1)) > fork.step
    ]
    config: dict[str, Any] = dict(fork.config)
    if updates:
        try:
            config = await _edit_at(app, fork, dict(updates))
        except (InvalidUpdateError, KeyError, ValueError) as exc:
            raise InvalidInputError(f"--set cannot apply {sorted(updates)}: {exc}") from None
    metadata = {"replay_of": original.trace_id}
    if original.run is not None and original.run.user is not None:
        metadata["user"] = original.run.user  # a re-run is still that user's run
    run_config: dict[str, Any] = {**config, "metadata": metadata}
    if prompts:
        run_config["configurable"] = {
            **run_config.get("configurable", {}),
            PROMPT_OVERRIDES_KEY: dict(prompts),
        }
    state = await app.ainvoke(None, run_config)
    return Rerun(
        fork,
        original.trace_id,
        original_state,
        dict(state),
        original_nodes,
        [],
        original.run.prompts if original.run is not None else (),
    )
