"""How warnings reach a person: one coloured line on stderr instead of Python's two-line form."""

from __future__ import annotations

import warnings
from typing import TextIO

_PLAIN_SHOWWARNING = warnings.showwarning


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[yellow bold]{category.__name__}[/]: {escape(str(message))}",
                               highlight=False, soft_wrap=True)


def enable_pretty_warnings() -> None:
    """Print warnings as ``Category: message`` on one coloured line (the CLI does this)."""
    warnings.showwarning = _show_warning


def disable_pretty_warnings() -> None:
    """Back to Python's own warning display."""
    warnings.showwarning = _PLAIN_SHOWWARNING


