"""The provider's daily flat files: a day of every US stock as one gzip CSV on an S3 endpoint, for the whole market
at the speed of the data (the REST API would need ~11,000 calls a night).

- `store`: the S3 endpoint: what exists (a listing, never the clock), each file's ETag, downloads that resume.
- `zone`: the landing zone's files, each kept raw with its ETag beside it.
- `land`: which days a run lands, reuses, lands again (a republished file) or lacks.
- `rows`: a landed file's lines as bars, with what the bar rules read, in Spark or in NumPy/Arrow.
- `arrow`: the day's bars judged, ranked, counted and shaped for the table without Spark (the delta-rs engine).
"""
