"""Argument parsing the command lines share: values, delay models, one-line usage errors.

:func:`parse_value` reads a ``KEY=VALUE`` value as a Python literal (``bandexa-bench``'s
``--agent-kwargs`` and ``--env-kwargs``, ``bandexa-ope``'s settings); :func:`parse_delay`
checks a ``--delay`` model.
"""

from __future__ import annotations

import argparse
import ast
import math
from collections.abc import Sequence
from typing import Any, NoReturn

from bandexa_gym.bench import delays


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are integers, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seeds must be >= 0, got {value}")
    return value


def _resources(minimum: float, strict: bool) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
            raise argparse.ArgumentTypeError(f"must be a number {bound}, got {text}")
        return value

    return parse


def parse_delay(text: str) -> str:
    """Validate a ``--delay`` model (:func:`bandexa_gym.bench.delays.parse_delay`) and return it in
    canonical form: ``fixed:N``, ``geometric:MEAN`` or ``uniform:LO:HI``.

    Raises:
        argparse.ArgumentTypeError: Anything else (the message says what is expected).
    """
    try:
        model = delays.parse_delay(text.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return str(model)


def parse_value(text: str) -> Any:
    """A command-line value as a Python literal where possible, else the string itself.

    ``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"True"``/``"true"`` -> True, ``"none"`` -> None,
    ``"[1, 2]"`` -> [1, 2], ``"{'hidden': 64}"`` -> dict, ``"concat"`` -> ``"concat"``.
    """
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _key_values(pairs: Sequence[str], option: str) -> list[tuple[str, str, Any]]:
    """Split ``[scope<sep>]key=value`` items into (scope, key, value); sep is ':' or '.'."""
    sep = ":" if option == "--env-kwargs" else "."
    items = []
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name:
            raise ValueError(f"{option} expects key=value items, got {pair!r}")
        scope, _, key = name.rpartition(sep)
        if not key.isidentifier():
            raise ValueError(f"{option}: {key!r} in {pair!r} is not a keyword name")
        items.append((scope, key, parse_value(value)))
    return items
