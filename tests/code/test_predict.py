import io
import json

import pytest

from newstag.data.records import read_records
from newstag.errors import NewstagError
from newstag.predict import predict_records, write_jsonl, write_table


def tag(bundle, records, strict=False):
    return list(predict_records(bundle, records, strict=strict))


def test_rows_keep_order_ids_and_have_scores(bundle):
    rows = tag(bundle, read_records(["the striker scored", "shares fell"], []))
    assert [r["id"] for r in rows] == [1, 2]
    assert [r["topic"] for r in rows] == ["sport", "biz"]
    for row in rows:
        assert set(row) == {"id", "topic", "topic_score", "tone", "tone_score"}
        assert 0 < row["topic_score"] <= 1 and 0 < row["tone_score"] <= 1


def test_jsonl_bad_line_becomes_an_error_row(bundle, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "a", "text": "goal in the final"}\n{broken\n{"id": "c", "text": "   "}\n'
                    '{"text": "shares rose"}\n')
    rows = tag(bundle, read_records([], [str(path)]))
    assert [r["id"] for r in rows] == ["a", 2, "c", 4]
    assert "line 2: not valid JSON" in rows[1]["error"]
    assert rows[2]["error"] == f"{path}: line 3: empty text"
    assert rows[3]["topic"] == "biz"
    with pytest.raises(NewstagError, match="line 2: not valid JSON.*drop --strict"):
        tag(bundle, read_records([], [str(path)]), strict=True)


def test_csv_with_text_column_and_missing_column(bundle, tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('id,body\nx1,"the striker, again, scored"\nx2,shares fell\n')
    rows = tag(bundle, read_records([], [str(path)], text_column="body"))
    assert [(r["id"], r["topic"]) for r in rows] == [("x1", "sport"), ("x2", "biz")]
    with pytest.raises(NewstagError, match=r"no column 'text' \(columns: id, body\); .*--text-column"):
        tag(bundle, read_records([], [str(path)]))


def test_txt_file_is_one_article_and_stdin_is_one_per_line(bundle, tmp_path, monkeypatch):
    article = tmp_path / "a.txt"
    article.write_text("The striker scored.\n\nThen he scored again in the final.\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("shares fell\n\nthe striker scored\n"))
    rows = tag(bundle, read_records([], [str(article), "-"]))
    assert [r["id"] for r in rows] == [str(article), 1, 3]
    assert [r["topic"] for r in rows] == ["sport", "biz", "sport"]


def test_missing_input_file_is_named(bundle, tmp_path):
    with pytest.raises(NewstagError, match="nope.txt: not found"):
        tag(bundle, read_records([], [str(tmp_path / "nope.txt")]))


def test_many_records_stream_in_chunks_in_order(bundle):
    records = read_records([f"the striker scored {i}" for i in range(4500)], [])
    rows = tag(bundle, records)
    assert [r["id"] for r in rows] == list(range(1, 4501))


def test_writers(bundle):
    rows = tag(bundle, read_records(["goal in the final"], []))
    out = io.StringIO()
    assert write_jsonl(rows + [{"id": 9, "error": "bad"}], out) == 1
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["topic"] == "sport" and lines[1] == {"id": 9, "error": "bad"}
    table = io.StringIO()
    write_table(rows, ["topic", "tone"], table)
    assert table.getvalue().splitlines()[1].split()[:2] == ["1", "sport"]


def test_table_cuts_a_long_id_at_its_start_behind_dots():
    import io as _io

    out = _io.StringIO()
    rows = [{"id": "/srv/newsroom/shared/seeds/article-000.txt", "topic": "world", "topic_score": 0.9}]
    write_table(rows, ["topic"], out)
    line = out.getvalue().splitlines()[-1]
    assert line.startswith("...red/seeds/article-000.txt world"), line
