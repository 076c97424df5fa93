"""What a request costs at a model's prices (per 1,000 tokens, as ModelSpec.price says)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hearth.types import Price, Usage


@dataclass(frozen=True)
class Cost:
    model: str
    usage: Usage
    price: Price

    @property
    def input_cost(self) -> float:
        return Price(self.price.input, 0.0).cost(self.usage)

    @property
    def output_cost(self) -> float:
        return Price(0.0, self.price.output).cost(self.usage)

    @property
    def total(self) -> float:
        return self.price.cost(self.usage)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_tokens": self.usage.prompt_tokens,
            "output_tokens": self.usage.completion_tokens,
            "price_input_per_1k": self.price.input,
            "price_output_per_1k": self.price.output,
            "input_cost": self.input_cost,
            "output_cost": self.output_cost,
            "total_cost": self.total,
        }
