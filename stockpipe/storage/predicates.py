"""Which rows a read keeps and a replacing write replaces: conjunctions of `column IN (values)`, as SQL text (for
Delta's replaceWhere and delta-rs's predicate), as a Spark column (for reads) and as an Arrow mask (for checking
rows already in hand)."""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column
from pyspark.sql import functions as F

from stockpipe.errors import PipelineError


@dataclass(frozen=True)
class _InClauses:
    """A conjunction of `column IN (values)`, as SQL text and as a Spark column."""

    clauses: tuple[tuple[str, tuple[Any, ...]], ...]

    @classmethod
    def of(cls, **columns: Iterable[Any]) -> Self:
        return cls(tuple((name, tuple(sorted(set(values)))) for name, values in columns.items()))

    def sql(self) -> str:
        return " AND ".join(_in_sql(name, values) for name, values in self.clauses)

    def column(self) -> Column:
        condition = F.lit(True)
        for name, values in self.clauses:
            condition = condition & F.col(name).isin(*values)
        return condition

    def columns(self) -> set[str]:
        return {name for name, _ in self.clauses}

    def matches_partition(self, values: Mapping[str, str | None]) -> bool:
        """Whether a file's partition values (Delta's text form) match; a null matches nothing, as in SQL."""
        return all(values.get(name) in allowed for name, allowed in self._texts)

    @functools.cached_property
    def _texts(self) -> tuple[tuple[str, frozenset[str]], ...]:
        # Built once: a long backfill's replace checks every file of the table against every day it replaces.
        return tuple((name, frozenset(_text(v) for v in values)) for name, values in self.clauses)

    def partitions(self, columns: Sequence[str]) -> set[tuple[str, ...]] | None:
        """Every partition (values in Delta's text form, in `columns` order) this predicate names, when it names
        exactly the table's partition columns; None when it constrains other columns or leaves one free."""
        allowed = dict(self._texts)
        if not columns or set(allowed) != set(columns):
            return None
        return set(itertools.product(*(sorted(allowed[name]) for name in columns)))

    def partition_filters(self) -> list[tuple[str, str, list[str]]]:
        """The conjunction as delta-rs partition filters (one `in` per column, values in Delta's text form)."""
        return [(name, "in", [_text(v) for v in values]) for name, values in self.clauses]

    def matches_all(self, table: pa.Table) -> bool:
        """Whether every row of an Arrow table matches (a null matches nothing, as in SQL)."""
        return _every_row(self.mask(table))

    def mask(self, table: pa.Table) -> pa.ChunkedArray:
        found = (pc.fill_null(pc.is_in(table.column(name), value_set=pa.array(values, table.schema.field(name).type)),
                              False) for name, values in self.clauses)
        return functools.reduce(pc.and_, found, pa.scalar(True))


class ReplacePredicate(_InClauses):
    """Rows to replace. Like Delta's replaceWhere, rows written under it must match it, and only matching rows are
    replaced."""


class RowFilter(_InClauses):
    """Rows to read. Files whose partition values or column statistics cannot match are skipped (data skipping)."""


@dataclass(frozen=True)
class AnyOf:
    """Rows matching any of several replace predicates: tickers whose stored days differ (the plan refused today
    for some) are replaced in one commit, each only on its own days."""

    predicates: tuple[ReplacePredicate, ...]

    def sql(self) -> str:
        return " OR ".join(f"({p.sql()})" for p in self.predicates)

    def column(self) -> Column:
        return functools.reduce(lambda a, b: a | b, (p.column() for p in self.predicates))

    def columns(self) -> set[str]:
        return set().union(*(p.columns() for p in self.predicates))

    def matches_partition(self, values: Mapping[str, str | None]) -> bool:
        return any(p.matches_partition(values) for p in self.predicates)

    def matches_all(self, table: pa.Table) -> bool:
        return _every_row(functools.reduce(pc.or_, (p.mask(table) for p in self.predicates)))

    def partitions(self, columns: Sequence[str]) -> set[tuple[str, ...]] | None:
        found: set[tuple[str, ...]] = set()
        for predicate in self.predicates:
            named = predicate.partitions(columns)
            if named is None:
                return None
            found |= named
        return found


# What a replacing write replaces: one predicate, or several tickers' own days at once.
Replacement = ReplacePredicate | AnyOf


def outside_predicate_error(replace: Replacement) -> PipelineError:
    return PipelineError(f"refusing to write rows outside the replace predicate ({replace.sql()}): nothing was written")


def _every_row(mask: pa.ChunkedArray) -> bool:
    return bool(pc.all(mask, min_count=0).as_py())  # min_count=0: an empty table matches


def _text(value: Any) -> str:
    """A partition value as Delta writes it in paths and add actions."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# Delta checks every row a replacing write brings against the predicate, as written: not rewritten by Spark's
# optimizer into a hash lookup, so `IN` compares a row with the list one value at a time. Longer lists go out in
# blocks of this many sorted values, each behind its range: a row compares with a few ranges and one block.
IN_BLOCK = 64


def _in_sql(name: str, values: tuple[Any, ...]) -> str:
    """`name IN (values)` as SQL that Spark and delta-rs both read, for exactly these values. A five-year replace
    names 1,258 days; checked one by one, its 5.75 M rows cost ~12 s of a five-year delta-spark write (a profiling
    script on the landed pages; docs/backfill.md)."""
    if len(values) <= IN_BLOCK:
        return f"{name} IN ({', '.join(_literal(v) for v in values)})"
    blocks = [values[start:start + IN_BLOCK] for start in range(0, len(values), IN_BLOCK)]
    # `values` are sorted, and SQL orders dates, numbers and (byte-wise) text as Python does: each block's range
    # holds its own values only, so the disjunction matches exactly the values listed. Not BETWEEN: Spark 4 turns
    # it into a shared-expression node that Delta 4.0's replaceWhere check fails to resolve (INTERNAL_ERROR).
    return "(" + " OR ".join(
        f"({name} >= {_literal(block[0])} AND {name} <= {_literal(block[-1])} "
        f"AND {name} IN ({', '.join(_literal(v) for v in block)}))"
        for block in blocks
    ) + ")"


def _literal(value: Any) -> str:
    if isinstance(value, dt.datetime):
        raise TypeError(f"unsupported predicate value {value!r}: a timestamp's zone would be the session's")
    if isinstance(value, dt.date):
        # A typed literal: compared with a date column as a date. A quoted string made Spark compare the column's
        # text instead (`IN` widens date and string to string), casting every row's date.
        return f"DATE'{value.isoformat()}'"
    if isinstance(value, str):
        # Spark reads 'O''NEIL' as two literals run together ("ONEIL") and escapes with a backslash, which delta-rs
        # does not: no quoting means the same to both, so text that would need it is refused (symbols never do).
        if "'" in value or "\\" in value:
            raise ValueError(f"unsupported predicate value {value!r}: quotes and backslashes are not allowed")
        return f"'{value}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    raise TypeError(f"unsupported predicate value {value!r}")
