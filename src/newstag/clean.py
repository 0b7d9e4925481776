"""Text cleaning shared by preprocessing and prediction, so a model sees the same text in both."""

import html
import re
import unicodedata

_TAG = re.compile(r"<[^>]{0,2000}>")
_SPACE = re.compile(r"\s+")
# Control and format characters (other than whitespace) carry no meaning for a tagger.
_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn"}


def clean_text(text: str) -> str:
    """Return `text` in NFC with HTML tags and entities removed and whitespace collapsed."""
    text = html.unescape(_TAG.sub(" ", text))
    text = unicodedata.normalize("NFC", text)
    text = "".join(
        char if char.isspace() or unicodedata.category(char) not in _INVISIBLE else " "
        for char in text
    )
    return _SPACE.sub(" ", text).strip()


def dedup_key(text: str) -> str:
    """The form two articles share when they are the same article: cleaned and case-folded."""
    return clean_text(text).casefold()
