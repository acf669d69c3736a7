"""Turning a search query into SQL over the listings and their full-text index: SQLite's FTS5
table, or PostgreSQL's tsvector column (see the migrations), chosen by the database's dialect.
Both match every word, the last as a prefix, and rank by relevance unless a sort is asked for.
"""

from __future__ import annotations

import re
from typing import Any

from colony.services.catalog.api import SearchQuery

_WORD = re.compile(r"\w+", re.UNICODE)
# No underscore: PostgreSQL's parser splits on it, and a tsquery operand must be one token.
_PG_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_SUMMARY = "l.id, l.seller_id, l.title, l.category, l.price_minor, l.currency, l.image_url"
_ORDER = {
    "price_asc": "l.price_minor ASC, l.id",
    "price_desc": "l.price_minor DESC, l.id",
    "newest": "l.created_at DESC, l.id",
}


def match_expression(text: str | None) -> str | None:
    """Every word must match, the last as a prefix (search as you type). Words are quoted,
    so nothing a user types is read as FTS5 syntax."""
    words = _WORD.findall(text or "")[:12]
    if not words:
        return None
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


def tsquery_expression(text: str | None) -> str | None:
    """PostgreSQL's version of :func:`match_expression`, for ``to_tsquery``. Words are quoted
    and hold only letters and digits, so nothing a user types is read as tsquery syntax."""
    words = _PG_WORD.findall(text or "")[:12]
    if not words:
        return None
    return " & ".join(f"'{w}'" for w in words) + ":*"


def search_sql(query: SearchQuery, dialect: str = "sqlite") -> tuple[str, str, dict[str, Any]]:
    """The page query and the count query for ``query``, with their parameters."""
    params: dict[str, Any] = {
        "limit": query.page_size,
        "offset": (query.page - 1) * query.page_size,
    }
    where = ["l.status = 'active'"]
    if query.category:
        where.append("l.category = :category")
        params["category"] = query.category
    if query.min_price is not None:
        where.append("l.price_minor >= :min_price")
        params["min_price"] = query.min_price
    if query.max_price is not None:
        where.append("l.price_minor <= :max_price")
        params["max_price"] = query.max_price
    if dialect == "postgresql":
        source, order = _postgresql_text(query, where, params)
    else:
        source, order = _sqlite_text(query, where, params)
    condition = " AND ".join(where)
    page = (
        f"SELECT {_SUMMARY} FROM {source} WHERE {condition} ORDER BY {order}"
        " LIMIT :limit OFFSET :offset"
    )
    count = f"SELECT count(*) FROM {source} WHERE {condition}"
    return page, count, params


def _sqlite_text(query: SearchQuery, where: list[str], params: dict[str, Any]) -> tuple[str, str]:
    match = match_expression(query.q)
    if match:
        params["match"] = match
        # CROSS JOIN fixes the loop order: walk the full-text matches, then look each listing
        # up. Left to itself, SQLite's planner may walk a category and run the MATCH per row.
        source = "listings_fts f CROSS JOIN listings l ON l.rowid = f.rowid"
        where.insert(0, "listings_fts MATCH :match")
        order = _ORDER.get(query.sort, "f.rank, l.id")
    else:
        source = "listings l"
        order = _ORDER.get(query.sort, "l.created_at DESC, l.id")
    return source, order


def _postgresql_text(
    query: SearchQuery, where: list[str], params: dict[str, Any]
) -> tuple[str, str]:
    match = tsquery_expression(query.q)
    if match is None:
        return "listings l", _ORDER.get(query.sort, "l.created_at DESC, l.id")
    params["match"] = match
    where.insert(0, "l.search @@ q.query")
    source = "listings l CROSS JOIN to_tsquery('listings_text', :match) AS q (query)"
    return source, _ORDER.get(query.sort, "ts_rank(l.search, q.query) DESC, l.id")
