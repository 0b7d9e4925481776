"""Text cleaning shared by preprocessing and prediction, so a model sees the same text in both."""

import html
import re
import unicodedata

_TAG = re.compile(r"<[^>]{0,2000}>")


def clean_text(text: str) -> str:
    """Return `text` in NFC with HTML tags and entities removed and whitespace collapsed."""
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    text = " ".join(unicodedata.normalize("NFC", text).split())
    if not text.isprintable():
        # Control and format characters (bidi marks, zero-width joiners, escapes) carry no
        # meaning for a tagger. The check above is C-fast, so this loop runs only when needed.
        text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text


def dedup_key(text: str) -> str:
    """The form two articles share when they are the same article: cleaned and case-folded."""
    return clean_text(text).casefold()
