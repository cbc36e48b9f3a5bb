"""Shared logic for the stock harvesters: fetch -> land -> transform -> write -> maintain -> register."""

DEFAULT_TICKERS: tuple[str, ...] = ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "META", "NVDA", "JPM")
