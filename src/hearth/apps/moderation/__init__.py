"""Sensitive-word moderation: word lists, normalisation, one automaton, a streaming filter.

    matcher = Matcher(load_lists(["ads", "abuse"], folder))
    masked, hits, blocking = moderate(matcher, text, "mask")
    stream = StreamFilter(matcher, "mask")   # feed() each piece, flush() at the end

Obfuscations are found (full width, case, traditional characters, Chinese digits, noise
and emoji between the characters, repeated characters) without false hits inside longer
words or across sentences.
"""

from hearth.apps.moderation.lists import ACTIONS, EXAMPLES, Word, load_lists, parse_list
from hearth.apps.moderation.matcher import Hit, Matcher, moderate
from hearth.apps.moderation.normalize import normalise
from hearth.apps.moderation.stream import StreamFilter

__all__ = [
    "ACTIONS",
    "EXAMPLES",
    "Hit",
    "Matcher",
    "StreamFilter",
    "Word",
    "load_lists",
    "moderate",
    "normalise",
    "parse_list",
]
