"""Markdown tables and the numbers in their cells, shared by the report, the probes and the component tables."""

from __future__ import annotations

import numpy as np


def markdown_grid(header, body) -> str:
    """A Markdown table from a header row and rows of cell strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def format_number(value: float, digits: int = 3) -> str:
    """A fraction or figure for a table; nan reads n/a."""
    return "n/a" if np.isnan(value) else f"{value:.{digits}f}"
