"""What a flag is: named variants, their weights, targeting rules, a kill switch, a default.

A flag picks one of its **variants** (any named JSON value: a prompt version, a
model spec, a retrieval setting) for each run. A flag is a small immutable value
object, checked when it is made, so a malformed flag (weights that do not sum to
100, a rule or default naming a variant it does not have, a name that is not a
name) is an :class:`~graphops.errors.InvalidInputError` before anything is stored,
and the store only ever holds flags that :func:`graphops.flags.evaluate.evaluate`
can evaluate.

Names are checked against strict patterns (lower case, digits, ``-``, ``_`` and
``.``) as well as bound as SQL parameters: a name can never carry SQL, quotes or
control characters into the database, the logs or a span.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from graphops.errors import InvalidInputError

__all__ = [
    "DEFAULT_STICKY_BY",
    "FLAG_NAME",
    "Flag",
    "FlagChange",
    "Rule",
    "check_attribute",
    "check_flag_name",
    "check_variant_name",
    "is_attribute",
]

FLAG_NAME = re.compile(r"^[a-z][a-z0-9_.\-]{0,63}$")
"""A flag name: lower case, digits, ``_``, ``-`` and ``.`` (``prompt.answer``)."""
_VARIANT = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,31}$")
_ATTRIBUTE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

DEFAULT_STICKY_BY = ("user", "tenant", "thread")
"""What assignment sticks to, the first one a run has: the same user gets the same variant."""

Operator = Literal["equals", "in"]


def check_flag_name(name: object) -> str:
    """``name`` if it is a valid flag name, else an :class:`InvalidInputError`."""
    if not isinstance(name, str) or not FLAG_NAME.match(name):
        raise InvalidInputError(
            f"{name!r} is not a flag name (a lower-case letter, then up to 63 of a-z 0-9 _ - .)"
        )
    return name


def check_variant_name(name: object) -> str:
    """``name`` if it is a valid variant name, else an :class:`InvalidInputError`."""
    if not isinstance(name, str) or not _VARIANT.match(name):
        raise InvalidInputError(
            f"{name!r} is not a variant name (up to 32 of a-z 0-9 _ - ., not starting with _-.)"
        )
    return name


def is_attribute(name: object) -> bool:
    """Whether ``name`` can name a context attribute (``user``, ``tenant``, ``plan``...)."""
    return isinstance(name, str) and _ATTRIBUTE.match(name) is not None


def check_attribute(name: object) -> str:
    """``name`` if it can name a context attribute, else an :class:`InvalidInputError`."""
    if not isinstance(name, str) or not is_attribute(name):
        raise InvalidInputError(
            f"{name!r} is not an attribute name (a lower-case letter, then a-z 0-9 _)"
        )
    return name


def _json_value(flag: str, variant: str, value: Any) -> Any:
    """``value`` as it will come back from the store: JSON, finite numbers only."""
    try:
        text = json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"flag {flag!r}: variant {variant!r} is not a JSON value ({exc})"
        ) from None
    return json.loads(text)


@dataclass(frozen=True, slots=True)
class Rule:
    """Runs whose ``attribute`` is one of ``values`` get ``variant``, or ``percent`` of them.

    ``percent`` below 100 takes a sticky share of that segment (the same user
    stays in or out as the share grows); the rest fall through to the next rule
    and then to the weights. ``op`` is ``"equals"`` (one value) or ``"in"``.
    """

    attribute: str
    values: tuple[str, ...]
    variant: str
    op: Operator = "in"
    percent: float = 100.0

    def __post_init__(self) -> None:
        check_attribute(self.attribute)
        check_variant_name(self.variant)
        if self.op not in ("equals", "in"):
            raise InvalidInputError(f"a rule's op is 'equals' or 'in', not {self.op!r}")
        values = (self.values,) if isinstance(self.values, str) else tuple(self.values)
        if not values or not all(isinstance(v, str) and v for v in values):
            raise InvalidInputError(
                f"a rule on {self.attribute!r} needs values, non-empty strings: got {values!r}"
            )
        if self.op == "equals" and len(values) != 1:
            raise InvalidInputError(f"an 'equals' rule takes one value, not {len(values)}")
        percent = self.percent
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise InvalidInputError(f"a rule's percent is a number, not {percent!r}")
        if not math.isfinite(percent) or not 0 <= percent <= 100:
            raise InvalidInputError(f"a rule's percent is between 0 and 100, not {percent!r}")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "percent", float(percent))

    def as_json(self) -> dict[str, Any]:
        """The rule as the store keeps it."""
        return {
            "attribute": self.attribute,
            "op": self.op,
            "values": list(self.values),
            "variant": self.variant,
            "percent": self.percent,
        }


@dataclass(frozen=True, slots=True)
class Flag:
    """A flag: ``variants`` (name → JSON value), integer ``weights`` summing to 100, a
    ``default``, targeting ``rules`` tried in order, and a kill switch.

    ``weights`` split the runs no rule took, sticky by the first attribute of
    ``sticky_by`` the run has; the shares are laid out in the order ``variants``
    lists them, so moving weight from the first variant to the last (a canary
    growing 5 → 25 → 50) keeps everyone already on the last variant there. A run
    with none of the ``sticky_by`` attributes gets the ``default``, and so does
    every run while ``killed``. ``version`` is the store's: 0 for a flag never stored.
    """

    name: str
    variants: Mapping[str, Any]
    weights: Mapping[str, int]
    default: str
    rules: tuple[Rule, ...] = ()
    sticky_by: tuple[str, ...] = DEFAULT_STICKY_BY
    killed: bool = False
    version: int = 0
    description: str = ""
    _order: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        name = check_flag_name(self.name)
        if not isinstance(self.variants, Mapping) or not self.variants:
            raise InvalidInputError(f"flag {name!r} needs at least one variant")
        variants = {
            check_variant_name(v): _json_value(name, v, value) for v, value in self.variants.items()
        }
        if not isinstance(self.weights, Mapping):
            raise InvalidInputError(f"flag {name!r}: weights map variant names to percents")
        weights: dict[str, int] = {}
        for variant, weight in self.weights.items():
            if variant not in variants:
                raise InvalidInputError(
                    f"flag {name!r}: weight for unknown variant {variant!r} "
                    f"(its variants: {', '.join(variants)})"
                )
            if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
                raise InvalidInputError(
                    f"flag {name!r}: the weight of {variant!r} is a whole percent 0-100, "
                    f"not {weight!r}"
                )
            weights[variant] = weight
        if sum(weights.values()) != 100:
            raise InvalidInputError(
                f"flag {name!r}: weights sum to {sum(weights.values())}, not 100 "
                f"({', '.join(f'{v}={w}' for v, w in weights.items())})"
            )
        if self.default not in variants:
            raise InvalidInputError(
                f"flag {name!r}: the default {self.default!r} is not one of its variants "
                f"({', '.join(variants)})"
            )
        rules = tuple(self.rules)
        for rule in rules:
            if not isinstance(rule, Rule):
                raise InvalidInputError(f"flag {name!r}: rules are Rule objects, not {rule!r}")
            if rule.variant not in variants:
                raise InvalidInputError(
                    f"flag {name!r}: a rule on {rule.attribute!r} names unknown variant "
                    f"{rule.variant!r}"
                )
        sticky = (self.sticky_by,) if isinstance(self.sticky_by, str) else tuple(self.sticky_by)
        if not sticky:
            raise InvalidInputError(f"flag {name!r}: sticky_by names at least one attribute")
        for attribute in sticky:
            check_attribute(attribute)
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 0:
            raise InvalidInputError(f"flag {name!r}: version is a count, not {self.version!r}")
        if not isinstance(self.description, str):
            raise InvalidInputError(f"flag {name!r}: the description is text")
        object.__setattr__(self, "variants", MappingProxyType(variants))
        object.__setattr__(self, "weights", MappingProxyType(weights))
        object.__setattr__(self, "rules", rules)
        object.__setattr__(self, "sticky_by", sticky)
        object.__setattr__(self, "killed", bool(self.killed))
        object.__setattr__(self, "_order", tuple(v for v in variants if weights.get(v, 0) > 0))

    @property
    def split(self) -> tuple[str, ...]:
        """The variants with a weight above 0, in the order their shares are laid out."""
        return self._order

    def as_json(self) -> dict[str, Any]:
        """The flag as the store and ``graphops flags show --json`` keep it (no version)."""
        return {
            "name": self.name,
            "variants": dict(self.variants),
            "weights": {v: self.weights.get(v, 0) for v in self.variants},
            "default": self.default,
            "rules": [r.as_json() for r in self.rules],
            "sticky_by": list(self.sticky_by),
            "killed": self.killed,
            "description": self.description,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], version: int = 0) -> Flag:
        """A flag from :meth:`as_json`'s shape; a malformed one is an InvalidInputError."""
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"a flag is a JSON object, not {type(data).__name__}")
        unknown = set(data) - {
            "name", "variants", "weights", "default", "rules", "sticky_by", "killed",
            "description",
        }  # fmt: skip
        if unknown:
            raise InvalidInputError(f"a flag has no field {', '.join(sorted(unknown))}")
        try:
            rules = tuple(
                Rule(
                    attribute=r["attribute"],
                    values=tuple(r["values"]),
                    variant=r["variant"],
                    op=r.get("op", "in"),
                    percent=r.get("percent", 100.0),
                )
                for r in data.get("rules", ())
            )
            return cls(
                name=data["name"],
                variants=data["variants"],
                weights=data["weights"],
                default=data["default"],
                rules=rules,
                sticky_by=tuple(data.get("sticky_by", DEFAULT_STICKY_BY)),
                killed=bool(data.get("killed", False)),
                version=version,
                description=str(data.get("description", "")),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise InvalidInputError(f"a flag misses or mistypes a field ({exc!r})") from None


@dataclass(frozen=True, slots=True)
class FlagChange:
    """One row of a flag's history in the audit log: who changed what, when, to what."""

    at_ns: int
    actor: str
    action: str  # set, kill, revive, rollout-* (the rollout controller's decisions)
    flag: str
    version: int
    detail: Mapping[str, Any]
