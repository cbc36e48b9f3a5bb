"""Reference data the harvester fetches beside the minute bars, landed raw and replayed like them:

- `corporate_actions`: splits and dividends, one landing and replay path for both, into `stocks_splits` and
  `stocks_dividends`; what they mean for prices is derived on read (the daily table), never written into the bars.
- `official_bars`: the provider's own daily bars of the days stored, into `stocks_official_daily`, so the daily table
  can be checked against them.
"""
