"""`newstag download NAME`: fetch a public corpus from its source, verify sha256, lay it out.

Each recipe pins the exact bytes it expects. Nothing is kept unless every file of the corpus
matches its checksum: files are written to temporary names and renamed only after verification.
"""

import hashlib
import logging
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from newstag.data.corpora import FOLDERS
from newstag.errors import NewstagError

log = logging.getLogger(__name__)
GITHUB = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a corpus: where it comes from, its sha256, where it goes, whether to unpack it."""

    url: str
    sha256: str
    name: str
    unpack_to: str | None = None


def _phrasebank(name: str, sha256: str) -> RemoteFile:
    commit = "wychen-null/project_nlp_cuda/1ea075323700e41e09f22fcc1682765177945f08"
    return RemoteFile(f"{GITHUB}/{commit}/data/FinancialPhraseBank-v1.0/{name}", sha256,
                      f"FinancialPhraseBank-v1.0/{name}")


_AG = f"{GITHUB}/Shane-Neeley/CharCnn_Keras/593e7af2de515835b42004b1b32dff6c069e9cf8/data/ag_news_csv"
_SEMEVAL = f"{GITHUB}/anshuly10/Biased-News-Detection/89e4073cca91dfa8a250a2636082788bad170f4e"
_ECON = f"{GITHUB}/SeanMichaelLee/CAP6640-Project/54ed171dbb3ddb3897a6bd99d6a1f2d50a8122c6/data"

RECIPES: dict[str, list[RemoteFile]] = {
    "20newsgroups": [RemoteFile(
        "http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz",
        "8f1b2514ca22a5ade8fbb9cfa5727df95fa587f4c87b786e15c759fa66d95610",
        "20news-bydate.tar.gz", unpack_to="20news-bydate")],
    "ag_news": [
        RemoteFile(f"{_AG}/test.csv",
                   "521465c2428ed7f02f8d6db6ffdd4b5447c1c701962353eb2c40d548c3c85699", "test.csv"),
        RemoteFile(f"{_AG}/classes.txt",
                   "612dbfa932f07a6ed837295a7d5746ce7412e7bb4bc32ba919fdb3cda3a1b9b5", "classes.txt"),
    ],
    "financial_phrasebank": [
        _phrasebank("Sentences_50Agree.txt",
                    "13388b8bf2f878c68fb4d47564fa0072756eb4e9ba4a16467d6d7f0a29a6a742"),
        _phrasebank("Sentences_66Agree.txt",
                    "6fcda6c07b5731fa075c81372413c921f95057b89ed611be0b2d1620ac94ac09"),
        _phrasebank("Sentences_75Agree.txt",
                    "8aa3210c6fc324ec2f5bd903f7767543280525cd88bb6cbed5d39b33f01a4f05"),
        _phrasebank("License.txt", "fa4f941ef92f40d55dd34ddea45d96a20672607d152698bc160f8db3af5e36c7"),
    ],
    "hyperpartisan": [
        RemoteFile(f"{_SEMEVAL}/articles-training-byarticle-20181122.xml",
                   "bbabd848f66ddd102651745930b50c41a11ade8d2a9273a6bd6b2db1e0642229",
                   "articles-training-byarticle-20181122.xml"),
        RemoteFile(f"{_SEMEVAL}/ground-truth-training-byarticle-20181122.xml",
                   "17cd01260c99739d4f3ac25f99ed39361cfde851bf018b675800a2b639bce790",
                   "ground-truth-training-byarticle-20181122.xml"),
    ],
    "econ_news_tone": [
        RemoteFile(f"{_ECON}/Full-Economic-News-clean.csv",
                   "64eff3360b5a4ebf3bfd0a123b0036dc07d48b7c8ac0d1bd1bf9a25f80cbbb3e",
                   "Full-Economic-News-clean.csv"),
    ],
}
# No checksum of the original bbc-fulltext.zip is published, so newstag will not fetch it blind.
MANUAL = {"bbc_news": "download http://mlg.ucd.ie/files/datasets/bbc-fulltext.zip yourself and "
                      "put it in {folder}/ (newstag reads the zip as it is)"}


def download(name: str, directory: Path, mirror: str | None = None) -> Path:
    """Fetch every file of corpus `name` into directory/<folder>; return that folder."""
    folder = directory / FOLDERS.get(name, name)
    if name in MANUAL:
        raise NewstagError(f"{name}: {MANUAL[name].format(folder=folder)}")
    if name not in RECIPES:
        raise NewstagError(f"unknown corpus {name!r}; downloadable: {', '.join(sorted(RECIPES))}")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as staging:
        fetched = [_fetch(item, _source(item, name, mirror), Path(staging)) for item in RECIPES[name]]
        for item, path in zip(RECIPES[name], fetched, strict=True):
            _install(item, path, folder)
    return folder


def _source(item: RemoteFile, name: str, mirror: str | None) -> str:
    """The original URL, or the same file under MIRROR/<folder>/<name>."""
    if not mirror:
        return item.url
    return f"{mirror.rstrip('/')}/{FOLDERS.get(name, name)}/{item.name}"


def _fetch(item: RemoteFile, url: str, staging: Path) -> Path:
    from tqdm.auto import tqdm

    target = staging / item.name.replace("/", "__")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out, \
                tqdm(total=int(response.headers.get("Content-Length") or 0) or None, unit="B",
                     unit_scale=True, desc=item.name, leave=False, disable=None) as progress:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
                progress.update(len(chunk))
    except OSError as exc:
        raise NewstagError(f"cannot download {url} ({getattr(exc, 'reason', exc)}); nothing "
                           f"was saved. Check the network or pass --mirror") from None
    if digest.hexdigest() != item.sha256:
        raise NewstagError(f"{url}: sha256 mismatch (expected {item.sha256}, got "
                           f"{digest.hexdigest()}); nothing was saved")
    return target


def _install(item: RemoteFile, path: Path, folder: Path) -> None:
    destination = folder / item.name
    destination.parent.mkdir(parents=True, exist_ok=True)
    if item.unpack_to:  # the adapters read the unpacked folder; the verified archive is not kept
        unpacked = path.with_suffix(".unpacked")
        with tarfile.open(path) as archive:
            archive.extractall(unpacked, filter="data")
        shutil.rmtree(folder / item.unpack_to, ignore_errors=True)
        unpacked.rename(folder / item.unpack_to)
        log.info("unpacked %s into %s", item.name, folder / item.unpack_to)
        return
    path.replace(destination)
    log.info("saved %s", destination)
