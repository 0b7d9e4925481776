"""Adapters for known public corpora, read in their published layouts from a data directory.

Each adapter returns a table with `id`, `text` (and `title` where the corpus has one), its label
column(s) and, when the corpus has an official split, a `split` column; plus the files it read,
so Make knows when to re-run. The generic folder-per-class reader serves users' own data too.
"""

import html
import os
import re
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from newstag.errors import NewstagError

DEFAULT_DATA_DIR = "data/raw"


@dataclass
class Corpus:
    """A loaded corpus: the rows and the files they came from."""

    frame: pd.DataFrame
    files: list[Path]


def data_dir(explicit: str | None = None) -> Path:
    """--data-dir, else NEWSTAG_DATA_DIR, else data/raw."""
    return Path(explicit or os.environ.get("NEWSTAG_DATA_DIR") or DEFAULT_DATA_DIR)


def load_corpus(name: str, directory: Path, options: dict | None = None) -> Corpus:
    """Load a known corpus by name, with its adapter's options."""
    if name not in ADAPTERS:
        raise NewstagError(f"unknown dataset {name!r}; known: {', '.join(sorted(ADAPTERS))}")
    adapter, valid_options = ADAPTERS[name]
    folder = directory / FOLDERS.get(name, name)
    options = options or {}
    unknown = sorted(set(options) - set(valid_options))
    if unknown:
        raise NewstagError(f"unknown option(s) {', '.join(unknown)} for dataset {name}; "
                           f"valid: {', '.join(valid_options) or 'none'}")
    return adapter(folder, **options)


def _require(folder: Path, *candidates: str) -> Path:
    """The first candidate file that exists in `folder`, or a clear error saying how to get it."""
    for candidate in candidates:
        if (folder / candidate).exists():
            return folder / candidate
    raise NewstagError(
        f"{folder / candidates[0]}: not found; put the corpus in {folder.parent} "
        f"(`newstag download {folder.name}` or set NEWSTAG_DATA_DIR / --data-dir)"
    )


# ---- folder-per-class archives (BBC News, 20 Newsgroups, users' own folders) -----------------

def iter_class_files(path: Path) -> Iterator[tuple[PurePosixPath, bytes]]:
    """Yield (relative path, bytes) of every file in a folder, .tar.gz/.tgz/.tar or .zip."""
    name = path.name.lower()
    try:
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                yield PurePosixPath(file.relative_to(path).as_posix()), file.read_bytes()
        elif name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(path) as archive:
                for member in archive:
                    if member.isfile():
                        yield PurePosixPath(member.name), archive.extractfile(member).read()
        elif name.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                for member in sorted(archive.namelist()):
                    if not member.endswith("/"):
                        yield PurePosixPath(member), archive.read(member)
        else:
            raise NewstagError(f"{path}: expected a folder, .tar.gz, .tgz, .tar or .zip")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise NewstagError(f"{path}: cannot read the archive ({exc}); is it truncated?") from None


def decode(data: bytes, fallback: str = "latin-1") -> str:
    """UTF-8 when the bytes are UTF-8, else the fallback (corpora that mix encodings)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(fallback)


def read_class_folders(path: Path, label: str = "label", suffix: str | None = ".txt") -> pd.DataFrame:
    """A folder (or archive) of <class>/<file> text files: one row per file, class from its folder."""
    files = list(iter_class_files(path))
    wrapper = _single_top_folder([relative for relative, _ in files])
    rows = []
    for relative, data in files:
        inner = PurePosixPath(*relative.parts[wrapper:]) if len(relative.parts) > wrapper else relative
        if len(inner.parts) < 2 or inner.name.startswith(".") or \
                (suffix and inner.suffix.lower() != suffix):
            continue
        rows.append({"id": str(inner), label: inner.parent.name, "text": decode(data)})
    if not rows:
        raise NewstagError(f"{path}: no <class>/<file>{suffix or ''} files found")
    frame = pd.DataFrame(rows)
    _check_classes_not_empty(path)
    return frame


def _single_top_folder(paths: list[PurePosixPath]) -> int:
    """1 when every file sits under one wrapping folder (as in bbc/<class>/...), else 0."""
    tops = {path.parts[0] for path in paths}
    return 1 if len(tops) == 1 and any(len(path.parts) > 2 for path in paths) else 0


def _check_classes_not_empty(path: Path) -> None:
    """In a folder tree, a class folder with no files in it is a mistake worth naming."""
    if not path.is_dir():
        return
    classes = [child for child in path.iterdir() if child.is_dir()]
    if len(classes) == 1 and not any(child.is_file() for child in path.iterdir()):
        classes = [child for child in classes[0].iterdir() if child.is_dir()]  # wrapped: news/<class>
    empty = sorted(c.name for c in classes if not any(p.is_file() for p in c.rglob("*")))
    if empty:
        raise NewstagError(f"{path}: class folder(s) {', '.join(empty)} hold no files; "
                           f"add articles or remove the folder")


# ---- the adapters --------------------------------------------------------------------------

def bbc_news(folder: Path) -> Corpus:
    """BBC News (Greene & Cunningham): bbc/<category>/NNN.txt, headline on line 1."""
    source = _require(folder, "bbc-fulltext.tar.gz", "bbc-fulltext.zip", "bbc")
    frame = read_class_folders(source, label="topic")
    title, _, body = zip(*(text.partition("\n") for text in frame["text"]), strict=True)
    frame["title"], frame["text"] = [t.strip() for t in title], [b.strip() for b in body]
    return Corpus(frame[["id", "title", "text", "topic"]], [source])


def twenty_newsgroups(folder: Path, remove: list[str] | tuple = ()) -> Corpus:
    """20 Newsgroups "bydate": 20news-bydate-{train,test}/<group>/<id>, Latin-1 posts.

    `remove` takes scikit-learn's convention: any of headers, footers, quotes.
    """
    unknown = set(remove) - set(STRIPPERS)
    if unknown:
        raise NewstagError(f"20newsgroups: remove takes headers, footers, quotes; got {sorted(unknown)}")
    source = _require(folder, "20news-bydate.tar.gz", "20news-bydate")
    rows = []
    for relative, data in iter_class_files(source):
        top = next((p for p in relative.parts if p.startswith("20news-bydate-")), None)
        if top is None or len(relative.parts) < 3:
            continue
        text = data.decode("latin-1")
        for part in ("headers", "footers", "quotes"):  # scikit-learn's order
            if part in remove:
                text = STRIPPERS[part](text)
        rows.append({"id": "/".join(relative.parts[-2:]), "text": text,
                     "topic": relative.parent.name, "split": top.removeprefix("20news-bydate-")})
    return Corpus(pd.DataFrame(rows), [source])


def strip_headers(text: str) -> str:
    """Drop everything before the first blank line (the e-mail headers)."""
    return text.partition("\n\n")[2]


_QUOTE = re.compile(r"(writes in|writes:|wrote:|says:|said:|^In article|^Quoted from|^\||^>)")


def strip_quotes(text: str) -> str:
    """Drop lines that quote another post."""
    return "\n".join(line for line in text.split("\n") if not _QUOTE.search(line))


def strip_footers(text: str) -> str:
    """Drop the signature: everything after the last line made only of dashes or blanks."""
    lines = text.strip().split("\n")
    for number in range(len(lines) - 1, -1, -1):
        if lines[number].strip().strip("-") == "":
            return "\n".join(lines[:number]) if number > 0 else text
    return text


STRIPPERS: dict[str, Callable[[str], str]] = {
    "headers": strip_headers, "footers": strip_footers, "quotes": strip_quotes}

AG_CLASSES = {"1": "world", "2": "sports", "3": "business", "4": "sci_tech"}
# The source turned every "&" of an HTML entity into a space: "doesn #39;t", "the  #36;10".
_AG_ENTITY = re.compile(r" (#\d+|quot|amp|lt|gt);")


def fix_ag_text(text: str) -> str:
    """Undo AG News' escaping artefacts (' #39;' for ', ' quot;' for ", ' #36;' for $, \\ for a break)."""
    text = _AG_ENTITY.sub(lambda match: html.unescape(f"&{match.group(1)};"), text)
    return text.replace("\\", " ")


def ag_news(folder: Path) -> Corpus:
    """AG News: headerless CSV (class 1-4, title, description); train.csv joins when present."""
    parts, files = [], []
    for split in ("train", "test"):
        try:
            path = _require(folder, f"{split}.csv", f"{split}.csv.gz")
        except NewstagError:
            if split == "test":
                raise
            continue
        frame = pd.read_csv(path, header=None, names=["label", "title", "description"], dtype=str,
                            keep_default_na=False)
        frame.insert(0, "id", [f"{split}-{i}" for i in range(1, len(frame) + 1)])
        frame["split"] = split
        parts.append(frame)
        files.append(path)
    frame = pd.concat(parts, ignore_index=True)
    frame["topic"] = frame.pop("label").map(AG_CLASSES)
    frame["title"] = frame["title"].map(fix_ag_text)
    frame["text"] = frame.pop("description").map(fix_ag_text)
    if len(parts) == 1:
        frame = frame.drop(columns="split")  # one split only: the experiment decides
    return Corpus(frame, files)


PHRASEBANK_FILES = {"50": "Sentences_50Agree.txt", "66": "Sentences_66Agree.txt",
                    "75": "Sentences_75Agree.txt", "all": "Sentences_AllAgree.txt"}


def financial_phrasebank(folder: Path, agreement: str | int = 50) -> Corpus:
    """Financial PhraseBank v1.0: Latin-1 lines `sentence@label`, one file per agreement level."""
    name = PHRASEBANK_FILES.get(str(agreement).lower())
    if name is None:
        raise NewstagError("financial_phrasebank: agreement must be one of 50, 66, 75, all")
    path = _require(folder, f"FinancialPhraseBank-v1.0/{name}", name)
    rows = []
    for number, line in enumerate(path.read_bytes().decode("latin-1").splitlines(), start=1):
        sentence, sep, label = line.rpartition("@")
        if not sep:
            raise NewstagError(f"{path}: line {number} has no '@label'")
        rows.append({"id": f"{agreement}-{number}", "text": sentence.strip(), "tone": label.strip()})
    return Corpus(pd.DataFrame(rows), [path])


def hyperpartisan(folder: Path) -> Corpus:
    """SemEval-2019 Task 4 by-article: articles XML joined on id with the ground-truth XML."""
    articles = _require(folder, "articles-training-byarticle-20181122.xml")
    truth = _require(folder, "ground-truth-training-byarticle-20181122.xml")
    labels = {node.get("id"): node.get("hyperpartisan") for node in _iter_xml(truth, "article")}
    rows = []
    for node in _iter_xml(articles, "article"):
        rows.append({"id": node.get("id"), "title": node.get("title") or "",
                     "text": " ".join(" ".join(node.itertext()).split()),
                     "hyperpartisan": labels.get(node.get("id"))})
    return Corpus(pd.DataFrame(rows), [articles, truth])


def _iter_xml(path: Path, tag: str):
    try:
        for _event, node in ET.iterparse(path):
            if node.tag == tag:
                yield node
    except ET.ParseError as exc:
        raise NewstagError(f"{path}: not valid XML ({exc})") from None


def econ_news_tone(folder: Path) -> Corpus:
    """Economic News Article Tone: positivity 1-9 of 1,420 US-economy articles, as three tones.

    1-4 negative, 5 neutral, 6-9 positive (the scale's midpoint is 5). Headlines are joined
    from the USECONOMYNEWS parts when present.
    """
    path = _require(folder, "Full-Economic-News-clean.csv.gz", "Full-Economic-News-clean.csv")
    frame = pd.read_csv(path, dtype={"_unit_id": str})
    frame = frame.rename(columns={"_unit_id": "id"})
    frame["tone"] = pd.cut(frame["positivity"], [0, 4, 5, 9],
                           labels=["negative", "neutral", "positive"]).astype(str)
    frame["positivity"] = frame["positivity"].astype(str)
    files = [path]
    parts = [folder / f"USECONOMYNEWS.part{i}.csv.gz" for i in (1, 2)]
    if all(part.exists() for part in parts):
        heads = pd.concat([pd.read_csv(p, usecols=["id", "headline"], dtype=str) for p in parts])
        frame = frame.merge(heads.rename(columns={"headline": "title"}), on="id", how="left")
        frame["title"] = frame["title"].fillna("")
        files += parts
    return Corpus(frame, files)


FOLDERS = {"hyperpartisan": "hyperpartisan_byarticle"}  # the folder names the corpora ship in

ADAPTERS: dict[str, tuple[Callable[..., Corpus], tuple[str, ...]]] = {
    "bbc_news": (bbc_news, ()),
    "20newsgroups": (twenty_newsgroups, ("remove",)),
    "ag_news": (ag_news, ()),
    "financial_phrasebank": (financial_phrasebank, ("agreement",)),
    "hyperpartisan": (hyperpartisan, ()),
    "econ_news_tone": (econ_news_tone, ()),
}
