"""What a call costs: a small price table per model, overridable.

Prices are USD per million tokens, list prices as published by the providers in
2026; override them with :class:`PriceTable` (``PriceTable({"my-model": Price(1, 2)})``)
or extend the defaults with :meth:`PriceTable.with_prices`. Local models cost 0;
an unknown remote model costs ``None`` (unknown), never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DEFAULT_PRICES", "FREE_PROVIDERS", "Price", "PriceTable"]


@dataclass(frozen=True)
class Price:
    """USD per million input and output tokens."""

    input_per_million: float
    output_per_million: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """The cost of one call."""
        return (
            input_tokens * self.input_per_million + output_tokens * self.output_per_million
        ) / 1_000_000


DEFAULT_PRICES: Mapping[str, Price] = {
    "gemini-2.5-flash": Price(0.30, 2.50),
    "gemini-2.5-flash-lite": Price(0.10, 0.40),
    "gemini-2.5-pro": Price(1.25, 10.00),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "text-embedding-3-small": Price(0.02, 0.0),
    "text-embedding-3-large": Price(0.13, 0.0),
}
FREE_PROVIDERS = frozenset({"llama_cpp", "scripted", "local"})


class PriceTable:
    """Model name → :class:`Price`; matches exact names, then the longest known prefix."""

    def __init__(self, prices: Mapping[str, Price] = DEFAULT_PRICES) -> None:
        self._prices = dict(prices)
        self._by_length = sorted(self._prices, key=len, reverse=True)

    def with_prices(self, prices: Mapping[str, Price]) -> PriceTable:
        """A new table: these prices over the current ones."""
        return PriceTable({**self._prices, **prices})

    def price(self, model: str) -> Price | None:
        """The price of ``model`` (``gemini-2.5-flash-001`` matches ``gemini-2.5-flash``)."""
        name = model.removeprefix("models/")
        found = self._prices.get(name)
        if found is None:
            found = next((self._prices[k] for k in self._by_length if name.startswith(k)), None)
        return found

    def cost(
        self, provider: str, model: str, input_tokens: int, output_tokens: int
    ) -> float | None:
        """USD for one call; 0 for local providers, ``None`` when the model is unknown."""
        if provider in FREE_PROVIDERS:
            return 0.0
        price = self.price(model)
        return None if price is None else price.cost(input_tokens, output_tokens)
