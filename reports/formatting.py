"""Turn numbers into the strings report tables show; blanks for unknown values."""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

Format = Callable[[object], str]


def _known(value: object) -> bool:
    if value is None:
        return False
    try:
        return not pd.isna(value)
    except (TypeError, ValueError):
        return True


def blank_or(fmt: Callable[[object], str]) -> Format:
    """``fmt`` for known values, ``""`` for None/NaN."""
    return lambda value: fmt(value) if _known(value) else ""


text = blank_or(str)


def significant(value: float, digits: int = 4) -> str:
    """``value`` with ``digits`` significant digits in fixed notation (33.51, 245.2, 0.006200)."""
    if value == 0 or not math.isfinite(value):
        return str(value)
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


ms = blank_or(lambda seconds: significant(seconds * 1e3))
millis = blank_or(significant)
percent = blank_or(lambda fraction: f"{fraction * 100:.1f}%")
integer = blank_or(lambda value: str(int(value)))
rate = blank_or(lambda value: f"{value:.1f}")
ratio = blank_or(lambda value: f"{value:.2f}x")
general = blank_or(lambda value: f"{value:.3g}")
flag = blank_or(lambda value: "yes" if value else "")
cbn = blank_or(lambda value: "on" if value else "off")


def p_value(value: object) -> str:
    """p-values: ``n/a`` when no test was possible."""
    return f"{value:.2g}" if _known(value) else "n/a"


def display(frame: pd.DataFrame, columns: dict[str, tuple[str, Format]]) -> pd.DataFrame:
    """A frame of strings: output column name -> (source column, formatter)."""
    return pd.DataFrame(
        {
            title: [fmt(value) for value in frame[source]]
            for title, (source, fmt) in columns.items()
        },
        index=range(len(frame)),
    )


def drop_blank_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without the columns whose every cell is ``""`` (fields nobody recorded)."""
    return frame.loc[:, (frame != "").any(axis=0)] if len(frame) else frame
