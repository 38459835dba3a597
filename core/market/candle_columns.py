"""The columns of a candle file, in file order: ``timestamp`` is the open time in ms UTC.

Apart from the readers so that naming them imports no reader (Arrow costs ~0.1 s to import).
"""

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
CSV_COLUMNS = ("timestamp", *PRICE_COLUMNS)
