"""`newstag download` against a real HTTP server on 127.0.0.1 serving the shared corpora."""

import functools
import gzip
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from newstag.data.corpora import load_corpus

from ..conftest import need_corpus, run_newstag


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path):
    """Serve tmp/mirror/<corpus>/<file>, laid out as the original sources serve the bytes."""
    root = tmp_path / "mirror"
    ag, fpb = need_corpus("ag_news"), need_corpus("financial_phrasebank")
    (root / "ag_news").mkdir(parents=True)
    (root / "ag_news" / "test.csv").write_bytes(gzip.decompress((ag / "test.csv.gz").read_bytes()))
    shutil.copy(ag / "classes.txt", root / "ag_news")
    shutil.copytree(fpb, root / "financial_phrasebank")
    (root / "20newsgroups").mkdir()
    # The shared 20 Newsgroups archive was re-packed: same posts, other bytes than the original.
    shutil.copy(need_corpus("20newsgroups") / "20news-bydate.tar.gz", root / "20newsgroups")
    handler = functools.partial(QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("name", ["ag_news", "financial_phrasebank"])
def test_download_verifies_and_lays_out_the_corpus(mirror, tmp_path, name):
    raw = tmp_path / "raw"
    result = run_newstag("download", name, "--mirror", mirror, "--data-dir", str(raw), cwd=tmp_path)
    assert f"{name}: verified and saved in" in result.stdout
    frame = load_corpus(name, raw).frame
    assert len(frame) == {"ag_news": 7600, "financial_phrasebank": 4846}[name]
    assert not list((raw / name).glob(".download-*")), "no staging folder left behind"


def test_checksum_mismatch_is_refused_and_leaves_nothing(mirror, tmp_path):
    raw = tmp_path / "raw"
    result = run_newstag("download", "20newsgroups", "--mirror", mirror, "--data-dir", str(raw),
                         cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert "sha256 mismatch (expected 8f1b2514" in result.stderr and "nothing was saved" in result.stderr
    assert "Traceback" not in result.stderr
    assert list((raw / "20newsgroups").iterdir()) == []


def test_unreachable_source_and_unknown_name(tmp_path):
    result = run_newstag("download", "ag_news", "--mirror", "http://127.0.0.1:9", "--data-dir",
                         str(tmp_path), cwd=tmp_path, check=False)
    assert result.returncode == 1 and "cannot download http://127.0.0.1:9/ag_news/test.csv" in result.stderr
    result = run_newstag("download", "reuters", cwd=tmp_path, check=False)
    assert result.returncode == 1 and "unknown corpus 'reuters'" in result.stderr
    result = run_newstag("download", "bbc_news", "--data-dir", str(tmp_path), cwd=tmp_path, check=False)
    assert result.returncode == 1 and "bbc-fulltext.zip yourself" in result.stderr
