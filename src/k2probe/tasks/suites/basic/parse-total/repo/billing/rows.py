def parse_total(row):
    return float(row["price"]) * int(row["qty"])
