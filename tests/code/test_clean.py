from newstag.data.clean import clean_text, dedup_key


def test_html_tags_and_entities_are_removed():
    assert clean_text("<p>Rates&nbsp;rose <b>sharply</b> &amp; fast</p>") == "Rates rose sharply & fast"


def test_whitespace_is_collapsed_and_trimmed():
    assert clean_text("  one\n\n two\t three  ") == "one two three"


def test_unicode_is_nfc():
    decomposed = "Cafe\u0301 owners"
    assert clean_text(decomposed) == "Caf\u00e9 owners"


def test_control_and_bidi_characters_become_spaces():
    assert clean_text("a\x00b\u200fc\u202ed") == "a b c d"


def test_dedup_key_ignores_case_markup_and_spacing():
    assert dedup_key("<b>Talks</b>  RESUMED") == dedup_key("talks resumed")


def test_other_scripts_and_emoji_survive():
    text = "Wahl in Köln 🗳️ 選挙 انتخابات"
    assert clean_text(text) == text
