"""Prices as people read and type them, and as the services store them (minor units)."""

from __future__ import annotations

import re

_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}
# Digits with at most two decimals: "12", "12.5", "12.50". No signs, exponents or separators,
# so what is accepted is exactly what the form's hint says.
_AMOUNT = re.compile(r"^([0-9]{1,12})(?:\.([0-9]{1,2}))?$")


def format_money(minor: int, currency: str) -> str:
    """2500 EUR -> "€25.00"; a currency without a symbol is written after the amount."""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    amount = f"{whole:,}.{cents:02d}"
    symbol = _SYMBOLS.get(currency)
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {currency}"


def parse_amount(text: str) -> int | None:
    """ "12.50" -> 1250 minor units; None when the text is not such an amount."""
    match = _AMOUNT.match(text.strip())
    if match is None:
        return None
    whole, decimals = match.group(1), (match.group(2) or "").ljust(2, "0")
    return int(whole) * 100 + int(decimals)


def amount_text(minor: int) -> str:
    """What a form field shows for a stored price: 1250 -> "12.50"."""
    whole, cents = divmod(minor, 100)
    return f"{whole}.{cents:02d}"
