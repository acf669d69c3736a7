"""Patterns for text in requests that read the same as JSON Schema (ECMA-262 regular
expressions, which the API document speaks) and as Python's ``re`` (which validates requests).

Why spelled out: ``\\s`` is not the same class in the two (Python's takes ``\\x1c``-``\\x1f``
and ``\\x85``, ECMA-262's takes ``\\ufeff``), so a pattern using it would let a client build a
request the document calls valid and the code refuses, or the other way round. The class
here is exactly the characters Python's ``str.isspace`` and ``str.strip`` treat as whitespace.
"""

WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
"""A character class's contents (no brackets): the characters ``str.isspace`` is true of."""
NON_BLANK = rf"^[^\x00]*[^{WHITESPACE}\x00][^\x00]*$"
"""Text with a character besides whitespace in it, and no NUL: what ``text.strip()`` leaves
something of. NUL is refused in every request (PostgreSQL's text cannot hold it)."""
NO_SPACE = rf"[^{WHITESPACE}\x00]"
"""One character that is neither whitespace nor NUL, for patterns of e-mail addresses and
URLs."""
