class Inventory:
    def __init__(self):
        self.stock = {}

    def add(self, sku, n):
        self.stock[sku] = self.stock.get(sku, 0) + n

    def remove(self, sku, n):
        self.stock[sku] = self.stock.get(sku, 0) - n
