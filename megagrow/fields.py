"""Documented dataclass fields: every config field carries its help text (``megagrow config --docs``)."""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any


def doc(help_text: str, default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    """A dataclass field with its documentation in ``metadata['help']``."""
    if isinstance(default, list | dict):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata={"help": help_text}, **kw)
    return field(default=default, metadata={"help": help_text}, **kw)
