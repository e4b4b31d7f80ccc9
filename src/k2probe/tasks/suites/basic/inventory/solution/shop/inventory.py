class Inventory:
    def __init__(self) -> None:
        self.stock: dict[str, int] = {}

    def add(self, sku: str, n: int) -> None:
        self.stock[sku] = self.stock.get(sku, 0) + n

    def remove(self, sku: str, n: int) -> None:
        """Take n items; ValueError (stock unchanged) when n is not positive or more than the stock."""
        have = self.stock.get(sku, 0)
        if n <= 0 or n > have:
            raise ValueError(f"cannot remove {n} of {sku!r}: {have} in stock")
        self.stock[sku] = have - n
