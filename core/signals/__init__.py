"""Signal providers: candles in, entry/exit signals out. The engine knows only the protocol."""
