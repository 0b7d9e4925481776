"""Adapters for known public corpora, read in their published layouts from a data directory.

Each adapter returns a table with `id`, `text` (and `title` where the corpus has one), its label
column(s) and, when the corpus has an official split, a `split` column; plus the files it read,
so Make knows when to re-run. The generic folder-per-class reader serves users' own data too.
"""

import html
import logging
import os
import re
import stat
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from newstag.errors import NewstagError

DEFAULT_DATA_DIR = "data/raw"
log = logging.getLogger(__name__)


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
    unknown = sorted(map(str, set(options) - set(valid_options)))
    if unknown:
        raise NewstagError(f"unknown option(s) {', '.join(unknown)} for dataset {name}; "
                           f"valid: {', '.join(valid_options) or 'none'}")
    for option, value in options.items():
        valid_options[option].check(value, f"data.options.{option}", name)
    return adapter(folder, **options)


@dataclass(frozen=True)
class Option:
    """What an adapter's option takes, checked before the adapter runs so a wrong type is named."""

    kind: str  # as the user should write it, for the message
    accepts: Callable[[Any], bool]

    def check(self, value, where: str, dataset: str) -> None:
        if not self.accepts(value):
            raise NewstagError(f"dataset {dataset}: '{where}' should be {self.kind}, "
                               f"got {type(value).__name__} {value!r}")


def _is_list_of_strings(value) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(item, str) for item in value)


def _is_plain_value(value) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


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

MB = 1 << 20
MAX_FILE_MB = 64
MAX_TOTAL_MB = 8192


@dataclass
class _Member:
    """One file of a folder or archive: its path inside, its declared size, and how to read it."""

    name: PurePosixPath
    size: int
    read: Callable[[int], bytes]  # at most that many bytes


@dataclass
class _Budget:
    """What a folder or archive may make us read, per file and in total, checked on declared sizes."""

    source: Path
    max_file_mb: int
    max_total_mb: int
    claimed: int = 0

    def claim(self, member: _Member) -> None:
        if member.size > self.max_file_mb * MB:
            raise NewstagError(
                f"{self.source}: {member.name} is {_megabytes(member.size)}, over the limit of "
                f"{self.max_file_mb} MB per file; remove it or raise data.max_file_mb")
        self.claimed += member.size
        if self.claimed > self.max_total_mb * MB:
            raise NewstagError(
                f"{self.source}: the articles add up to more than the limit of {self.max_total_mb} MB; "
                f"use fewer or raise data.max_total_mb")


def _megabytes(size: int) -> str:
    return f"{size / MB:,.1f} MB"


def iter_class_files(path: Path, wanted: Callable[[PurePosixPath], bool] = lambda name: True,
                     max_file_mb: int = MAX_FILE_MB, max_total_mb: int = MAX_TOTAL_MB,
                     ) -> Iterator[tuple[PurePosixPath, bytes]]:
    """Yield (relative path, bytes) of the files `wanted` accepts in a folder, .tar.gz/.tgz/.tar or .zip.

    Declared sizes are checked against the limits before anything is read, and each read stops one
    byte past the declared size, so a small archive declaring or inflating to gigabytes is refused
    instead of filling memory. Files `wanted` refuses are never read.
    """
    with _open_members(path, wanted, _Budget(path, max_file_mb, max_total_mb)) as members:
        yield from ((member.name, _read_member(path, member)) for member in members)


def _read_member(path: Path, member: _Member) -> bytes:
    try:
        data = member.read(member.size + 1)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise NewstagError(f"{path}: cannot read {member.name} ({exc}); is the archive truncated?") \
            from None
    if len(data) > member.size:
        raise NewstagError(f"{path}: {member.name} holds more than the {member.size} bytes it "
                           f"declares; it changed while being read, or the archive is damaged")
    return data


@contextmanager
def _open_members(path: Path, wanted, budget: _Budget) -> Iterator[list[_Member]]:
    """The wanted files of a folder or archive, each within the budget; links and specials skipped."""
    name = path.name.lower()
    try:
        kind = os.stat(path).st_mode
        if stat.S_ISDIR(kind):
            yield _folder_members(path, wanted, budget)
        elif not stat.S_ISREG(kind):
            raise NewstagError(f"{path}: not a regular file or folder; data.path must name a "
                               f"folder, .tar.gz, .tgz, .tar or .zip")
        elif name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(path) as archive:
                yield _tar_members(path, archive, wanted, budget)
        elif name.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                yield _zip_members(path, archive, wanted, budget)
        else:
            raise NewstagError(f"{path}: expected a folder, .tar.gz, .tgz, .tar or .zip")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise NewstagError(f"{path}: cannot read the archive ({exc}); is it truncated?") from None


def _folder_members(path: Path, wanted, budget: _Budget) -> list[_Member]:
    """Regular files under `path`; a link leading outside it, a pipe or a device is no article."""
    root, members, skipped = path.resolve(), [], 0
    for folder, subfolders, files in os.walk(path):  # does not descend into linked folders
        skipped += sum(_leads_outside(Path(folder, sub), root) for sub in subfolders)
        for file in (Path(folder, name) for name in files):
            relative = PurePosixPath(file.relative_to(path).as_posix())
            if not wanted(relative):
                continue
            if _leads_outside(file, root) or not file.is_file():
                skipped += 1
                continue
            member = _Member(relative, file.stat().st_size, partial(_read_regular_file, file))
            budget.claim(member)
            members.append(member)
    _warn_skipped(path, skipped)
    return sorted(members, key=lambda member: member.name)


def _leads_outside(file: Path, root: Path) -> bool:
    return file.is_symlink() and not file.resolve().is_relative_to(root)


def _read_regular_file(file: Path, limit: int) -> bytes:
    """Read at most `limit` bytes, never blocking on a file swapped for a pipe since it was listed."""
    with os.fdopen(os.open(file, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise NewstagError(f"{file}: no longer a regular file; it changed while being read")
        return handle.read(limit)


def _tar_members(path: Path, archive: tarfile.TarFile, wanted, budget: _Budget) -> list[_Member]:
    members, skipped = [], 0
    for info in archive:
        if info.issym() or info.islnk():
            skipped += wanted(PurePosixPath(info.name))
        elif info.isfile() and wanted(PurePosixPath(info.name)):
            member = _Member(PurePosixPath(info.name), info.size,
                             lambda limit, info=info: archive.extractfile(info).read(limit))
            budget.claim(member)
            members.append(member)
    _warn_skipped(path, skipped)
    return members


def _zip_members(path: Path, archive: zipfile.ZipFile, wanted, budget: _Budget) -> list[_Member]:
    members, skipped = [], 0
    for info in sorted(archive.infolist(), key=lambda info: info.filename):
        if info.is_dir() or not wanted(PurePosixPath(info.filename)):
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            skipped += 1
            continue
        member = _Member(PurePosixPath(info.filename), info.file_size,
                         lambda limit, info=info: _read_zip_member(archive, info, limit))
        budget.claim(member)
        members.append(member)
    _warn_skipped(path, skipped)
    return members


def _read_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    with archive.open(info) as handle:
        return handle.read(limit)


def _warn_skipped(path: Path, skipped: int) -> None:
    if skipped:
        log.warning("%s: skipped %d link(s) or special file(s) that are no articles "
                    "(links leading outside, pipes, devices)", path, skipped)


def decode(data: bytes, fallback: str = "latin-1") -> str:
    """UTF-8 when the bytes are UTF-8, else the fallback (corpora that mix encodings)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(fallback)


def read_class_folders(path: Path, label: str = "label", suffix: str | None = ".txt",
                       max_file_mb: int = MAX_FILE_MB, max_total_mb: int = MAX_TOTAL_MB) -> pd.DataFrame:
    """A folder (or archive) of <class>/<file> text files: one row per file, class from its folder.

    Files that cannot be articles (hidden, another suffix, not inside a folder) are never read;
    the rest are read within the size limits (see iter_class_files).
    """
    def could_be_article(name: PurePosixPath) -> bool:
        return len(name.parts) >= 2 and not any(part.startswith(".") for part in name.parts) \
            and (not suffix or name.suffix.lower() == suffix)

    budget = _Budget(path, max_file_mb, max_total_mb)
    with _open_members(path, could_be_article, budget) as members:
        wrapper = _single_top_folder([member.name for member in members])
        rows = []
        for member in members:
            inner = PurePosixPath(*member.name.parts[wrapper:])
            if len(inner.parts) >= 2:  # a file beside the class folders is no article
                rows.append({"id": str(inner), label: inner.parent.name,
                             "text": decode(_read_member(path, member))})
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


def twenty_newsgroups(folder: Path, remove: list[str] | tuple = (), labels: str = "topic") -> Corpus:
    """20 Newsgroups "bydate": 20news-bydate-{train,test}/<group>/<id>, Latin-1 posts.

    `remove` takes scikit-learn's convention: any of headers, footers, quotes. `labels: joined`
    gives a multi-label corpus instead of the `topic` column (see join_posts).
    """
    unknown = set(remove) - set(STRIPPERS)
    if unknown:
        raise NewstagError(f"20newsgroups: remove takes headers, footers, quotes; got {sorted(unknown)}")
    if labels not in ("topic", "joined"):
        raise NewstagError(f"dataset 20newsgroups: 'data.options.labels' is {labels!r}; "
                           f"choose topic (one group a post) or joined (two-group posts joined)")
    source = _require(folder, "20news-bydate.tar.gz", "20news-bydate")
    rows = []
    for relative, data in iter_class_files(source, _is_newsgroup_post):
        top = next(p for p in relative.parts if p.startswith("20news-bydate-"))
        text = data.decode("latin-1")
        for part in ("headers", "footers", "quotes"):  # scikit-learn's order
            if part in remove:
                text = STRIPPERS[part](text)
        rows.append({"id": "/".join(relative.parts[-2:]), "text": text,
                     "topic": relative.parent.name, "split": top.removeprefix("20news-bydate-")})
    frame = pd.DataFrame(rows)
    return Corpus(join_posts(frame) if labels == "joined" else frame, [source])


def join_posts(frame: pd.DataFrame, share: float = 1 / 6, seed: int = 0) -> pd.DataFrame:
    """A multi-label corpus built from real posts: within each split, `share` of the posts (drawn
    at random) each get a post of another group from the same split appended after a blank line,
    and the column `topics` lists both groups; the appended post is no row of its own.

    The bydate release dropped the Newsgroups: and Xref: headers that named the groups a post was
    cross-posted to (and the duplicate copies of cross-posts), so real cross-posts cannot be
    recovered from it. A sixth gives 1.2 labels a row, as in Reuters-21578's topic categories.
    The split stays the official one, so no text is shared between train and test.
    """
    import random

    rng, rows = random.Random(seed), []
    for split in frame["split"].unique():
        posts = frame[frame["split"] == split].to_dict("records")
        rng.shuffle(posts)
        hosts, pool = posts[:round(len(posts) * share)], posts[round(len(posts) * share):]
        for host in hosts:
            other = next((i for i, post in enumerate(pool) if post["topic"] != host["topic"]), None)
            if other is None:  # only the host's group is left: it stays single
                pool.append(host)
                continue
            guest = pool.pop(other)
            rows.append({"id": f"{host['id']}+{guest['id']}", "text": f"{host['text']}\n\n{guest['text']}",
                         "topics": [host["topic"], guest["topic"]], "split": split})
        rows += [{"id": p["id"], "text": p["text"], "topics": [p["topic"]], "split": split} for p in pool]
    return pd.DataFrame(rows).sort_values("id", kind="stable", ignore_index=True)


def _is_newsgroup_post(name: PurePosixPath) -> bool:
    """20news-bydate-<split>/<group>/<id>, possibly inside a wrapping folder."""
    return len(name.parts) >= 3 and any(part.startswith("20news-bydate-") for part in name.parts)


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


def econ_news_tone(folder: Path, tone: str = "three") -> Corpus:
    """Economic News Article Tone: positivity 1-9 of 1,420 US-economy articles, as three tones.

    1-4 negative, 5 neutral, 6-9 positive (the scale's midpoint is 5). With `tone: binary` the
    neutral 5s are dropped, leaving negative and positive. The score itself stays in the column
    `positivity`, for an ordinal task. Headlines are joined from the USECONOMYNEWS parts when
    present.
    """
    if tone not in ECON_TONES:
        raise NewstagError(f"dataset econ_news_tone: 'data.options.tone' is {tone!r}; "
                           f"choose one of: {', '.join(ECON_TONES)}")
    path = _require(folder, "Full-Economic-News-clean.csv.gz", "Full-Economic-News-clean.csv")
    frame = pd.read_csv(path, dtype={"_unit_id": str})
    frame = frame.rename(columns={"_unit_id": "id"})
    if tone == "binary":
        frame = frame[frame["positivity"] != 5].reset_index(drop=True)
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


ECON_TONES = ("three", "binary")
FOLDERS = {"hyperpartisan": "hyperpartisan_byarticle"}  # the folder names the corpora ship in

ADAPTERS: dict[str, tuple[Callable[..., Corpus], dict[str, Option]]] = {
    "bbc_news": (bbc_news, {}),
    "20newsgroups": (twenty_newsgroups, {"remove": Option(
        "a list of any of headers, footers, quotes, e.g. [headers]", _is_list_of_strings),
        "labels": Option("topic or joined (a word, not a list)", lambda value: isinstance(value, str))}),
    "ag_news": (ag_news, {}),
    "financial_phrasebank": (financial_phrasebank, {"agreement": Option(
        "one of 50, 66, 75, all (a number or a word, not a list)", _is_plain_value)}),
    "hyperpartisan": (hyperpartisan, {}),
    "econ_news_tone": (econ_news_tone, {"tone": Option(
        "three (negative / neutral / positive) or binary (the neutral 5s dropped)",
        lambda value: isinstance(value, str))}),
}
