"""Reading one of the harness's TOML data files, with a one-line error naming the file and the problem."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


def read_toml(path: Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """The parsed file; ``error`` (one line) when it is missing or not valid TOML."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except tomllib.TOMLDecodeError as problem:
        raise error(f"{what} {path} is not valid TOML: {problem}") from None
