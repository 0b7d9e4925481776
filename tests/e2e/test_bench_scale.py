"""`make bench-scale` on a tiny size: the synthetic corpus, the measured runs and the comparison."""

import json

import pytest

from newstag.cli import main
from newstag.scale import SCALE_DIR, bench_scale, build_corpus, table

from ..conftest import need_corpus


def test_bench_scale_measures_each_size_and_compares_with_the_in_memory_model(tmp_path, monkeypatch):
    data_dir = need_corpus("bbc_news").parent
    monkeypatch.chdir(tmp_path)
    result = bench_scale([0.002], data_dir, epochs=1, chunk_rows=1000, in_memory_gb=0.002)
    row = result["sizes"][0]
    assert row["articles"] > 1000 and row["duplicates_removed"] > 0  # one article in 50 is a twin
    assert row["preprocess"]["peak_mb"] > 0 and row["train"]["peak_mb"] > 0 and row["evaluate"]["peak_mb"] > 0
    assert 0.3 < row["test_accuracy"] <= 1 and 0.3 < result["comparison"]["in_memory"]["accuracy"] <= 1
    assert "| 0.002 |" in table(result)
    corpus = build_corpus(0.002, data_dir)  # built once, then reused
    assert corpus.parent == SCALE_DIR and json.loads(corpus.with_suffix(".json").read_text())["articles"]


@pytest.mark.parametrize("sizes", ["0.5,x", "0,1"])
def test_bad_sizes_are_one_line(sizes, capsys):
    assert main(["bench", "--scale", sizes]) == 1
    assert "give sizes in GB" in capsys.readouterr().err
