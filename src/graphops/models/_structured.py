"""Structured output for models that answer with JSON text (the fakes and the recorder).

They have no tool calling to lean on: the reply is the JSON, parsed into the schema.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.runnables import Runnable
from pydantic import BaseModel

__all__ = ["json_structured"]


def json_structured(
    model: BaseChatModel, schema: dict[str, Any] | type
) -> Runnable[LanguageModelInput, Any]:
    """``model`` piped into a parser for ``schema`` (a pydantic model, else a dict)."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return model | PydanticOutputParser(pydantic_object=schema)
    return model | JsonOutputParser()
