"""Legacy names as JID localparts: XEP-0106 escaping, extended so that every name round-trips.

XEP-0106 turns the ten characters a localpart may not hold (space ``" & ' / : < > @``
and the backslash) into ``\\20``-style sequences. Legacy names need more than that
to come back intact: nodeprep (RFC 3920) case-folds ``Alice`` to ``alice``,
normalizes compatibility characters and forbids control characters, so a stanza to
the buddy's JID would name somebody else. :func:`escape_node` therefore also writes
every character that nodeprep would change or refuse as ``\\hh`` sequences of its
UTF-8 bytes (lowercase hex, which nodeprep leaves alone), and always escapes the
backslash itself. The result is a valid, already-prepared localpart that clients
showing XEP-0106 names display readably for ordinary names; :func:`unescape_node`
inverts it exactly.

>>> print(escape_node("john doe@work"), escape_node("Alice"))
john\\20doe\\40work \\41lice
>>> unescape_node(escape_node("John Doe@work"))
'John Doe@work'
"""

from __future__ import annotations

from twisted.words.protocols.jabber.xmpp_stringprep import nodeprep

#: The characters XEP-0106 escapes (the backslash is always escaped here).
_SPECIAL = frozenset(' "&\'/:<>@\\')
_HEX = "0123456789abcdef"
#: Longest localpart in bytes (RFC 6122).
MAX_NODE_BYTES = 1023


class EscapeError(ValueError):
    """The legacy name cannot be a localpart (empty, or too long once escaped)."""


def _bytes_escape(char: str) -> str:
    return "".join(f"\\{b:02x}" for b in char.encode("utf-8", "surrogatepass"))


def _char_is_stable(char: str) -> bool:
    if char.isascii():
        return char.isprintable() and not char.isupper() and char not in _SPECIAL
    try:
        return nodeprep.prepare(char) == char
    except UnicodeError:
        return False


def escape_node(name: str) -> str:
    """The localpart standing for legacy *name*; :class:`EscapeError` when there is none."""
    if not name:
        raise EscapeError("an empty name has no localpart")
    out = "".join(c if _char_is_stable(c) else _bytes_escape(c) for c in name)
    if not out.isascii():
        # characters that are fine alone may still combine (normalization, bidi rules)
        try:
            ok = nodeprep.prepare(out) == out
        except UnicodeError:
            ok = False
        if not ok:
            out = "".join(c if c.isascii() and _char_is_stable(c) else _bytes_escape(c) for c in name)
    if len(out.encode("utf-8")) > MAX_NODE_BYTES:
        raise EscapeError(f"the name is longer than {MAX_NODE_BYTES} bytes once escaped")
    return out


def _decode(data: bytearray) -> str:
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace")


def unescape_node(node: str) -> str:
    """The legacy name a localpart stands for (inverse of :func:`escape_node`).

    Backslashes not followed by two hex digits are kept as they are (a JID a
    client made up); byte sequences that are not UTF-8 are decoded leniently.
    """
    if "\\" not in node:
        return node
    out: list[str] = []
    pending = bytearray()
    i = 0
    n = len(node)
    while i < n:
        c = node[i]
        if c == "\\" and i + 2 < n and node[i + 1] in _HEX and node[i + 2] in _HEX:
            pending.append(int(node[i + 1:i + 3], 16))
            i += 3
            continue
        if pending:
            out.append(_decode(pending))
            pending.clear()
        out.append(c)
        i += 1
    if pending:
        out.append(_decode(pending))
    return "".join(out)
