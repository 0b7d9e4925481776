"""Negation scopes: which words of a text a negation governs ("did not rise" -> not_rise).

Plain Python (re only): NegationMarker uses it while training, and the compact form of a model
uses the very same code when predicting without scikit-learn, so both mark the same words.
"""

import re

# Words that open a negation scope; any token ending in n't (isn't, didn't) does too.
NEGATORS = frozenset({"not", "no", "never", "n't", "without", "nor", "neither", "none", "nobody",
                      "nothing", "nowhere", "cannot", "hardly", "barely", "scarcely", "lack",
                      "lacked", "lacking", "lacks"})
SCOPE_ENDS = frozenset(".,:;!?")
# Conjunctions that start a new clause, so they end a negation's scope too (as in Das & Chen and
# Pang et al.): in "the strike did not end and workers stayed out", "stayed" is not negated.
CLAUSE_BREAKS = frozenset({"but", "and", "or"})
SCOPE_BREAKS = SCOPE_ENDS | CLAUSE_BREAKS
TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*|n't|[.,:;!?]")


def lowered(text: str) -> str:
    """The text as tokens see it: lower case, typographic apostrophes made plain."""
    return text.lower().replace("\u2019", "'")


def tokens(text: str) -> list[str]:
    """Lower-cased words, with the punctuation that ends a negation scope kept as tokens."""
    return TOKEN.findall(lowered(text))


def negation_scopes(words: list[str], window: int = 0) -> list[bool]:
    """For each token, whether it lies in a negation's scope: after a negator, until punctuation
    or a clause-joining conjunction (but, and, or), or after `window` tokens when window > 0.
    Neither a negator nor the word that ends a scope is marked; a second negator in a scope
    starts a new scope rather than cancelling the first. (A negator is a NEGATORS word or a token
    ending in n't, tested inline: prediction runs the loop on every word.)"""
    marked, left = [], 0
    append = marked.append
    for word in words:
        if word in SCOPE_BREAKS:
            left = 0
            append(False)
        elif word in NEGATORS or word.endswith("n't"):
            left = window or -1
            append(False)
        else:
            append(left != 0)
            if left > 0:
                left -= 1
    return marked


def mark_negation(text: str, window: int = 0) -> list[str]:
    """The text's words in a negation scope, prefixed: "profits did not rise." -> ["not_rise"]."""
    plain = lowered(text)
    words = TOKEN.findall(plain)  # tokens(text), with the lowered text kept for the check below
    if "n't" not in plain and NEGATORS.isdisjoint(words):
        return []  # no negator (every token ending in n't contains it): nothing to mark
    return [f"not_{word}" for word, inside in zip(words, negation_scopes(words, window), strict=True)
            if inside]
