"""Validation of user where-clauses: one boolean SQL expression over stored scalar columns.

The clause is tokenised and every token must be a literal (number, ``'string'``), an
operator, a parenthesis or comma, a stored scalar column, or one of a few keywords
(``AND OR NOT IN BETWEEN IS NULL LIKE ILIKE TRUE FALSE DATE TIMESTAMP CAST AS`` and
the type names CAST accepts). Anything else is refused, which rules out ``;``,
comments, quoted identifiers, functions, subqueries (``SELECT`` is not a keyword
here) and the vector / grid / geometry columns. Type errors the tokeniser cannot see
(``lon = 'x'``) surface when LanceDB runs the filter and become the same SpecError.
"""

from __future__ import annotations

import re

import pyarrow as pa

from rsembed_db.errors import SpecError
from rsembed_db.store.schema import embedding_schema

FIELD = "filters.where"
MAX_LENGTH = 4000

KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "BETWEEN", "IS", "NULL", "LIKE", "ILIKE", "TRUE",
                      "FALSE", "DATE", "TIMESTAMP", "CAST", "AS"})
CAST_TYPES = frozenset({"BIGINT", "INT", "INTEGER", "DOUBLE", "FLOAT", "VARCHAR", "STRING", "BOOLEAN"})
PREDICATES = frozenset({"=", "!=", "<>", "<", "<=", ">", ">=", "IN", "BETWEEN", "IS", "LIKE", "ILIKE",
                        "TRUE", "FALSE"})

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|<>|!=|=|<|>|\+|-|\*|/|%)
  | (?P<punct>[(),])
""", re.VERBOSE)


def scalar_columns() -> tuple[str, ...]:
    """Stored columns a where-clause may use (all but vectors, grids and binary geometry)."""
    schema = embedding_schema(1)
    return tuple(f.name for f in schema
                 if not (pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type)
                         or pa.types.is_binary(f.type)))


def tokens(clause: str) -> list[tuple[str, str]]:
    """(kind, text) tokens; SpecError at the first character that starts no token."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(clause):
        match = _TOKEN.match(clause, pos)
        if match is None:
            char = clause[pos]
            why = "statement separators are not allowed" if char == ";" else "unexpected character"
            raise SpecError(FIELD, f"{why}: {char!r} at position {pos}")
        kind = match.lastgroup or ""  # every alternative of _TOKEN is a named group
        if kind != "ws":
            out.append((kind, match.group()))
        pos = match.end()
    return out


def validate_where(clause: str) -> str:
    """Return ``clause`` stripped if it is a safe boolean expression; SpecError otherwise."""
    if not isinstance(clause, str) or not clause.strip():
        raise SpecError(FIELD, "must be a non-empty SQL boolean expression")
    clause = clause.strip()
    if len(clause) > MAX_LENGTH:
        raise SpecError(FIELD, f"longer than {MAX_LENGTH} characters")
    columns = scalar_columns()
    toks = tokens(clause)
    depth = 0
    previous = ""
    for kind, text in toks:
        upper = text.upper()
        if kind == "op" and text in ("-", "/") and previous == text:
            raise SpecError(FIELD, "comments are not allowed")
        if kind == "op" and text == "*" and previous == "/":
            raise SpecError(FIELD, "comments are not allowed")
        if kind == "name" and upper not in KEYWORDS and upper not in CAST_TYPES and text not in columns:
            if upper == "SELECT":
                raise SpecError(FIELD, "subqueries are not allowed")
            raise SpecError(FIELD, f"unknown column or keyword {text!r}", columns)
        if kind == "punct":
            depth += {"(": 1, ")": -1}.get(text, 0)
            if depth < 0:
                raise SpecError(FIELD, "unbalanced parentheses")
        previous = text
    if depth:
        raise SpecError(FIELD, "unbalanced parentheses")
    if not any(text.upper() in PREDICATES for kind, text in toks if kind in ("op", "name")):
        raise SpecError(FIELD, "must be a boolean expression (a comparison, IN, BETWEEN, IS, LIKE)")
    return clause
