"""Free text that people type and the system stores: what may be in it, and how long it may be.

Names, titles and notes are data: a screen shows them as text, never as markup (assets/*.js put
them in text nodes, Dash renders strings as text). At the door they are also held to a form:

- a length limit per kind of field (counted in characters after trimming the ends);
- no control characters: C0 and C1 controls (U+0000-U+001F, U+007F-U+009F) are refused, except a
  line feed, a carriage return and a tab in multi-line text (`clean` turns CR LF and CR into LF;
  `problem` only judges); the line and paragraph separators U+2028/U+2029 are refused in a single line;
- no bidirectional overrides, embeddings or isolates (U+202A-U+202E, U+2066-U+2069): an RTL
  override makes a name read backwards on a screen ("Trojan Source"), and nothing a person types
  into these fields needs one (Arabic or Hebrew text is laid out by the browser without them).

One owner of the rule: the registry (members, phones, org units), the dashboard's commands (a
user's or a wall screen's name, a hotline case, an announcement, an alarm's note, a calendar day),
the case machine, and the terminals' messages (telemetry.messages) all ask `problem` or `clean`.
Some fields keep a stricter length of their own (an announcement's title, a calendar day's name,
a case's reason, each terminal message's field).
"""
from __future__ import annotations

from dataclasses import dataclass

BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@dataclass(frozen=True)
class Kind:
    """A kind of free-text field: at most `max_length` characters; `multiline`: line feeds and tabs."""
    name: str
    max_length: int
    multiline: bool = False


# what a person can do about a character they cannot see (it came with a paste)
_RETYPE = " at position {at}: an invisible character, usually pasted in; type the text again there"

NAME = Kind("name", 100)                # a person, a building, a gateway, an org unit, a user, a wall screen
LINE = Kind("line", 200)                # a case's title, an address or place
NOTE = Kind("note", 2000, True)         # a report's text, a case's note or reason, an announcement, a diary entry


def problem(value: str, kind: Kind) -> str | None:
    """What is wrong with `value` as a field of this kind (in words), or None."""
    if len(value) > kind.max_length:
        return f"has {len(value):,} characters, at most {kind.max_length:,} are allowed"
    for at, ch in enumerate(value, 1):
        code = ord(ch)
        if code < 0x20 or 0x7f <= code <= 0x9f:
            if kind.multiline and ch in "\n\t\r":
                continue
            return f"must not contain the control character U+{code:04X}{_RETYPE.format(at=at)}"
        if ch in BIDI_CONTROLS:
            return f"must not contain the bidirectional control U+{code:04X}{_RETYPE.format(at=at)}"
        if ch in "\u2028\u2029" and not kind.multiline:
            return f"must be one line (found U+{code:04X}){_RETYPE.format(at=at)}"
    return None


def clean(value: str | None, kind: Kind, field: str, required: bool = False) -> str:
    """`value` trimmed (line ends as LF) if it is acceptable; ValueError naming `field` and what is
    wrong otherwise. None is the empty string; `required`: the empty string is refused too."""
    text = (value or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    if required and not text:
        raise ValueError(f"{field} is required")
    wrong = problem(text, kind)
    if wrong:
        raise ValueError(f"{field} {wrong}")
    return text


def shown(value: str, kind: Kind) -> str:
    """`value` as a screen may take it: at most the kind's length (cut with "…"). What is stored
    from before a limit, or written past the door, must not make a screen unusable (a browser took
    75 s to draw a list of members one of whom had a 10,000-character name)."""
    return value if len(value) <= kind.max_length else value[:kind.max_length - 1] + "…"
