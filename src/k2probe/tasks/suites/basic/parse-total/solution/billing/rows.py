from collections.abc import Mapping
from decimal import Decimal, InvalidOperation


def parse_total(row: Mapping[str, str]) -> Decimal:
    """price * qty for one row; ValueError names the missing column or the bad value."""
    try:
        raw_price, raw_qty = row["price"], row["qty"]
    except KeyError as exc:
        raise ValueError(f"missing column: {exc.args[0]}") from exc
    try:
        price = Decimal(str(raw_price).strip())
        qty = int(str(raw_qty).strip())
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"bad number in row: {row!r}") from exc
    if price < 0 or qty < 0:
        raise ValueError("price and qty must not be negative")
    return price * qty
