"""Trust in the stored bars, in the shape of DLT expectations and dbt tests, recorded like Great Expectations results.

- `rules`: the gate. Rules on one bar (a number where a number belongs, `t` a whole minute, prices finite and
  positive, OHLC in order, volume finite and not negative) as data: a name and a Spark expression each, one list both
  storage engines' runs evaluate. A bar that breaks one never enters the facts.
- `quarantine`: where those bars go instead, `stocks_quarantine`, with their raw text and the first rule they broke.
- `checks`: rules over many bars (completeness against the exchange calendar, duplicates, spikes, zero volume, stale
  prices, days without bars) that never drop data: one row per (run, ticker, day, check) in `quality_checks`.
- `guard`: a refetch may correct what is stored, never shrink it silently.

Used by the harvest (stockpipe.harvest); nothing here fetches or knows the API's client.
"""
