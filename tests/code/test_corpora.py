"""Adapters on small fixtures written here in each corpus' published layout and quirks."""

import gzip
import io
import tarfile
import zipfile

import pytest

from newstag.data.corpora import (
    fix_ag_text,
    load_corpus,
    read_class_folders,
    strip_footers,
    strip_headers,
    strip_quotes,
)
from newstag.errors import NewstagError


def make_tar(path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_bbc_tar_with_headline_line_and_a_latin1_file(tmp_path):
    (tmp_path / "bbc_news").mkdir()
    make_tar(tmp_path / "bbc_news" / "bbc-fulltext.tar.gz", {
        "bbc/README.TXT": b"about the corpus",
        "bbc/sport/001.txt": b"Cup win\n\nThe side won the cup.",
        "bbc/sport/199.txt": "Price rise\n\nTickets cost \u00a35 more.".encode("latin-1"),
        "bbc/tech/001.txt": b"New chip\n\nA faster chip.\n",
    })
    frame = load_corpus("bbc_news", tmp_path).frame
    assert list(frame["id"]) == ["sport/001.txt", "sport/199.txt", "tech/001.txt"]
    assert list(frame["title"]) == ["Cup win", "Price rise", "New chip"]
    assert frame["text"].iloc[1] == "Tickets cost \u00a35 more."
    assert list(frame["topic"]) == ["sport", "sport", "tech"]


def test_20newsgroups_splits_and_sklearn_style_stripping(tmp_path):
    post = (b"From: a@b.c\nSubject: engines\n\nIn article <1@x> bob writes:\n> old text\n"
            b"My new text about engines.\n\n--\nAlice, Acme Corp\n")
    (tmp_path / "20newsgroups").mkdir()
    make_tar(tmp_path / "20newsgroups" / "20news-bydate.tar.gz", {
        "20news-bydate-train/rec.autos/101": post, "20news-bydate-test/sci.med/202": b"\xe9t\xe9"})
    frame = load_corpus("20newsgroups", tmp_path).frame
    assert list(frame["split"]) == ["train", "test"] and list(frame["topic"]) == ["rec.autos", "sci.med"]
    assert frame["text"].iloc[1] == "\u00e9t\u00e9"  # Latin-1, as published
    stripped = load_corpus("20newsgroups", tmp_path, {"remove": ["headers", "footers", "quotes"]})
    assert stripped.frame["text"].iloc[0].strip() == "My new text about engines."
    with pytest.raises(NewstagError, match="remove takes headers, footers, quotes"):
        load_corpus("20newsgroups", tmp_path, {"remove": ["signatures"]})


def test_20newsgroups_joined_gives_two_group_posts_within_each_split(tmp_path):
    posts = {f"20news-bydate-{split}/{group}/{i}": f"From: x\n\n{group} post {i}".encode()
             for split, first in (("train", 0), ("test", 100))
             for group in ("rec.autos", "sci.med", "sci.space") for i in range(first, first + 4)}
    (tmp_path / "20newsgroups").mkdir()
    make_tar(tmp_path / "20newsgroups" / "20news-bydate.tar.gz", posts)
    frame = load_corpus("20newsgroups", tmp_path, {"labels": "joined", "remove": ["headers"]}).frame
    joined = frame[frame["topics"].map(len) == 2]
    assert len(joined) == 2 * 2 and len(frame) == 24 - 4  # a sixth of 12 a split, guests no rows
    assert all(len(set(topics)) == 2 for topics in joined["topics"])
    for _, row in joined.iterrows():  # each half is a post of its group, from the row's own split
        (host, first), (guest, second) = (part.split("/") for part in row["id"].split("+"))
        assert row["text"] == f"{host} post {first}\n\n{guest} post {second}"
        assert list(row["topics"]) == [host, guest]
        assert (int(first) < 100) == (int(second) < 100) == (row["split"] == "train")
    texts = [part for text in frame["text"] for part in text.split("\n\n")]
    assert len(texts) == len(set(texts)) == 24  # every post used once
    assert "topic" not in frame
    with pytest.raises(NewstagError, match="'data.options.labels' is 'crossposts'; choose topic"):
        load_corpus("20newsgroups", tmp_path, {"labels": "crossposts"})
    with pytest.raises(NewstagError, match="'data.options.labels' should be topic or joined"):
        load_corpus("20newsgroups", tmp_path, {"labels": ["joined"]})


def test_strippers_one_by_one():
    assert strip_headers("A: b\n\nbody") == "body"
    assert strip_quotes("x wrote:\n> q\nkept") == "kept"
    assert strip_footers("body\n--\nsig") == "body"


def test_ag_news_headerless_csv_and_escapes(tmp_path):
    folder = tmp_path / "ag_news"
    folder.mkdir()
    rows = '"3","Fed #39;s move","Rates rose  quot;sharply quot; to  #36;5\\bn"\n"2","Cup","Win"\n'
    (folder / "test.csv.gz").write_bytes(gzip.compress(rows.encode()))
    frame = load_corpus("ag_news", tmp_path).frame
    assert list(frame["topic"]) == ["business", "sports"]
    assert frame["title"].iloc[0] == "Fed's move"
    assert frame["text"].iloc[0] == 'Rates rose "sharply" to $5 bn'
    assert "split" not in frame  # only the test part: the experiment decides the split
    (folder / "train.csv").write_text('"1","Talks","Envoys met"\n')
    frame = load_corpus("ag_news", tmp_path).frame
    assert list(frame["split"]) == ["train", "test", "test"] and frame["topic"].iloc[0] == "world"
    assert fix_ag_text("Johnson  amp; Johnson") == "Johnson & Johnson"
    assert fix_ag_text("Sony #146;s") == "Sony\u2019s"


def test_financial_phrasebank_latin1_and_last_at_sign(tmp_path):
    folder = tmp_path / "financial_phrasebank" / "FinancialPhraseBank-v1.0"
    folder.mkdir(parents=True)
    text = "Sales rose 5 % @ the Helsinki unit , said K\u00e4rkk\u00e4inen .@positive\nFlat year .@neutral\n"
    (folder / "Sentences_50Agree.txt").write_bytes(text.encode("latin-1"))
    frame = load_corpus("financial_phrasebank", tmp_path).frame
    assert frame["text"].iloc[0] == "Sales rose 5 % @ the Helsinki unit , said K\u00e4rkk\u00e4inen ."
    assert list(frame["tone"]) == ["positive", "neutral"]
    with pytest.raises(NewstagError, match="agreement must be one of"):
        load_corpus("financial_phrasebank", tmp_path, {"agreement": 90})


def test_hyperpartisan_xml_joined_on_id(tmp_path):
    folder = tmp_path / "hyperpartisan_byarticle"
    folder.mkdir()
    (folder / "articles-training-byarticle-20181122.xml").write_text(
        '<articles><article id="1" title="Outrage"><p>They <a href="x">lie</a> again.</p></article>'
        '<article id="2" title="Report"><p>Rates held.</p></article></articles>')
    (folder / "ground-truth-training-byarticle-20181122.xml").write_text(
        '<articles><article id="2" hyperpartisan="false"/><article id="1" hyperpartisan="true"/></articles>')
    frame = load_corpus("hyperpartisan", tmp_path).frame
    assert frame.to_dict("records") == [
        {"id": "1", "title": "Outrage", "text": "They lie again.", "hyperpartisan": "true"},
        {"id": "2", "title": "Report", "text": "Rates held.", "hyperpartisan": "false"}]


def test_econ_news_tone_maps_positivity_to_three_tones(tmp_path):
    folder = tmp_path / "econ_news_tone"
    folder.mkdir()
    (folder / "Full-Economic-News-clean.csv.gz").write_bytes(gzip.compress(
        b"_unit_id,positivity,text\r\n1,3,Jobs lost.\r\n2,5,Data out.\r\n3,7,Jobs gained.\r\n"))
    frame = load_corpus("econ_news_tone", tmp_path).frame
    assert list(frame["tone"]) == ["negative", "neutral", "positive"]


def test_unknown_corpus_and_option_and_missing_files(tmp_path):
    with pytest.raises(NewstagError, match="unknown dataset 'reuters'; known: 20newsgroups"):
        load_corpus("reuters", tmp_path)
    with pytest.raises(NewstagError, match="unknown option.*agreemnt.*valid: agreement"):
        load_corpus("financial_phrasebank", tmp_path, {"agreemnt": 50})
    with pytest.raises(NewstagError, match=r"bbc-fulltext.tar.gz: not found.*newstag download bbc_news"):
        load_corpus("bbc_news", tmp_path)


@pytest.mark.parametrize("kind", ["folder", "tar.gz", "zip"])
def test_users_folder_per_class_in_each_packing(tmp_path, kind):
    files = {"news/politics/a.txt": b"Vote today", "news/sport/b.txt": b"Goal!",
             "news/sport/c.md": b"ignored"}
    if kind == "folder":
        for name, data in files.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(data)
        source = tmp_path / "news"
    elif kind == "tar.gz":
        source = tmp_path / "news.tar.gz"
        make_tar(source, files)
    else:
        source = tmp_path / "news.zip"
        with zipfile.ZipFile(source, "w") as archive:
            for name, data in files.items():
                archive.writestr(name, data)
    frame = read_class_folders(source)
    pairs = sorted(zip(frame["label"], frame["text"], strict=True))
    assert pairs == [("politics", "Vote today"), ("sport", "Goal!")]


def test_empty_class_folder_is_named(tmp_path):
    for name in ("politics", "sport"):
        (tmp_path / name).mkdir()
    (tmp_path / "politics" / "a.txt").write_text("Vote")
    with pytest.raises(NewstagError, match="class folder.*sport hold no files"):
        read_class_folders(tmp_path)


def test_truncated_archive_is_a_clear_error(tmp_path):
    path = tmp_path / "news.tar.gz"
    make_tar(path, {"news/a/1.txt": b"x" * 5000, "news/b/2.txt": b"y" * 5000})
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(NewstagError, match="cannot read the archive.*truncated"):
        read_class_folders(path)
