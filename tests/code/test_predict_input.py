"""Hard input for `newstag predict`: every input record gives exactly one output row (a tagged row
or an error row), the output is always strict JSON, and no input can hang the run, crash it or
fill memory."""

import io
import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from newstag import predict
from newstag.cli import main
from newstag.data.records import Record, read_records
from newstag.errors import NewstagError
from newstag.models.bundle import save_bundle
from newstag.predict import predict_records, write_jsonl, write_table


@pytest.fixture(scope="module")
def model(bundle, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    save_bundle(path, bundle["pipelines"], {})
    return path


def tag_file(bundle, tmp_path, name: str, data: bytes, **options) -> list[dict]:
    path = tmp_path / name
    path.write_bytes(data)
    return list(predict_records(bundle, read_records([], [str(path)], **options)))


def tag_stdin(bundle, monkeypatch, data: bytes, **options) -> list[dict]:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    return list(predict_records(bundle, read_records([], ["-"], **options)))


def strict_json(line: str):
    def refuse(name):
        raise AssertionError(f"{name} in the output")
    return json.loads(line, parse_constant=refuse)


def fails_cleanly(capsys, *args: str) -> str:
    code = main(["predict", *args])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("newstag: error: ")
    return err


# ---- CSV ----------------------------------------------------------------------------------------

def test_csv_field_over_the_csv_module_default_limit_is_tagged(bundle, tmp_path):
    data = f'id,text\nx1,"{"goal " * 40_000}"\nx2,shares fell\n'.encode()  # 200,000 characters
    rows = tag_file(bundle, tmp_path, "in.csv", data)
    assert [(r["id"], r["topic"]) for r in rows] == [("x1", "sport"), ("x2", "biz")]


def test_csv_record_over_the_cap_is_one_error_row(bundle, tmp_path):
    data = f'id,text\nx1,goal\nx2,"{"goal " * 20_000}"\nx3,shares fell\n'.encode()
    rows = tag_file(bundle, tmp_path, "in.csv", data, max_record_bytes=50_000)
    assert [r["id"] for r in rows] == ["x1", 2, "x3"]
    assert "line 3: longer than the 0.05 MB record limit" in rows[1]["error"]
    assert "--max-record-mb" in rows[1]["error"]


def test_csv_unclosed_quote_is_an_error_row_not_the_rest_of_the_file(bundle, tmp_path):
    data = b'id,text\nx1,goal\nx2,"the striker never closes\nx3,shares fell\nx4,shares rose\n'
    rows = tag_file(bundle, tmp_path, "in.csv", data)
    assert [r["id"] for r in rows] == ["x1", 2, "x3", "x4"]
    assert "in.csv: line 3: a quoted field opened on this line is never closed" in rows[1]["error"]
    assert [r.get("topic") for r in rows] == ["sport", None, "biz", "biz"]


def test_csv_header_with_an_unclosed_quote_stops_the_run(bundle, tmp_path):
    with pytest.raises(NewstagError, match=r"in\.csv: a quoted field in the header line is never closed"):
        tag_file(bundle, tmp_path, "in.csv", b'id,text,"note\nx1,goal,a\nx2,shares,b\n')


def test_csv_quoted_field_over_several_lines_still_reads(bundle, tmp_path):
    data = b'id,text\r\nx1,"goal\r\nin the\r\nfinal"\r\nx2,"shares ""fell"""\r\n'
    rows = tag_file(bundle, tmp_path, "in.csv", data)
    assert [(r["id"], r["topic"]) for r in rows] == [("x1", "sport"), ("x2", "biz")]


def test_csv_undecodable_line_inside_a_quoted_field_is_one_error_row(bundle, tmp_path):
    data = b'id,text\nx1,"goal\nin the \xff final"\nx2,shares fell\n'
    rows = tag_file(bundle, tmp_path, "in.csv", data)
    assert [r["id"] for r in rows] == [1, "x2"]
    offset = data.index(b"\xff")
    assert ("in.csv: line 2: the record goes on to line 3, which is not valid utf-8 (invalid start "
            f"byte at byte {offset})") in rows[0]["error"]


def test_csv_excel_export_with_bom_and_crlf(bundle, tmp_path):
    data = "text,id\r\ngoal in the final,x1\r\nshares fell,x2\r\n".encode("utf-8-sig")
    rows = tag_file(bundle, tmp_path, "in.csv", data)
    assert [(r["id"], r["topic"]) for r in rows] == [("x1", "sport"), ("x2", "biz")]
    tsv = tag_file(bundle, tmp_path, "in.tsv", data.replace(b",", b"\t"))
    assert [r["id"] for r in tsv] == ["x1", "x2"]


@pytest.mark.parametrize(("name", "data", "separators"), [
    ("in.csv", b"id,text\nx1,goal\nx2,too,many,fields\nx3,shares fell\n", "commas"),
    ("in.tsv", b"id\ttext\nx1\tgoal\nx2\ttoo\tmany\tfields\nx3\tshares fell\n", "tabs"),
])
def test_csv_row_with_more_fields_than_the_header_is_one_error_row(bundle, tmp_path, name, data,
                                                                    separators):
    rows = tag_file(bundle, tmp_path, name, data)
    assert [r["id"] for r in rows] == ["x1", 2, "x3"]
    assert rows[1]["error"] == (f"{tmp_path / name}: line 3: 4 fields where the header has 2; "
                                f"quote the text if it contains {separators}")
    assert [r.get("topic") for r in rows] == ["sport", None, "biz"]


def test_empty_csv_says_the_file_is_empty(model, tmp_path, capsys):
    (tmp_path / "in.csv").write_bytes(b"")
    err = fails_cleanly(capsys, "--model", str(model), "--input", str(tmp_path / "in.csv"))
    assert err == (f"newstag: error: {tmp_path / 'in.csv'}: the file is empty; a CSV needs a "
                   f"header line naming a 'text' column")


@pytest.mark.parametrize(("name", "data", "where"), [
    ("in.csv", b'id,text\nx1,goal\nx2,"  "\n', "in.csv: line 3"),
    ("in.jsonl", b'{"text": "goal"}\n\n{"text": "\\t"}\n', "in.jsonl: line 3"),
    ("in.txt", b" \n", "in.txt"),
])
def test_empty_text_error_names_the_file_and_line(bundle, tmp_path, name, data, where):
    rows = tag_file(bundle, tmp_path, name, data)
    assert rows[-1]["error"] == f"{tmp_path / where}: empty text"


# ---- JSON lines ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "problem"), [
    ('{"text": "goal", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ('{"text": "goal", "n": ' + "7" * 5000 + "}", "a number with 5000 digits"),
    ('{"text": "goal", "score": NaN}', "not valid JSON (NaN is not allowed)"),
    ('{"text": "goal", "score": -Infinity}', "-Infinity is not allowed"),
    ('{"text": "goal", "score": 1e400}', "too large"),
    ('{"id": 1.5, "text": "goal"}', "'id' must be a string or an integer, not a number with"),
    ('{"id": {"a": 1}, "text": "goal"}', "'id' must be a string or an integer, not an object"),
    ('{"id": true, "text": "goal"}', "not a boolean"),
])
def test_jsonl_values_python_cannot_hold_are_error_rows(bundle, tmp_path, line, problem):
    data = f'{{"id": "a", "text": "goal"}}\n{line}\n{{"id": "c", "text": "shares fell"}}\n'.encode()
    rows = tag_file(bundle, tmp_path, "in.jsonl", data)
    assert [r["id"] for r in rows] == ["a", 2, "c"]
    assert "in.jsonl: line 2: " in rows[1]["error"] and problem in rows[1]["error"]
    out = io.StringIO()
    write_jsonl(rows, out)
    assert [strict_json(line)["id"] for line in out.getvalue().splitlines()] == ["a", 2, "c"]


def test_output_is_strict_json_whatever_the_ids_and_scores(bundle, tmp_path):
    data = b'{"id": "\\ud800 lone surrogate", "text": "goal"}\n{"id": "K\\u00f6ln", "text": "goal"}\n'
    rows = tag_file(bundle, tmp_path, "in.jsonl", data)
    rows.append({"id": 7, "topic": "sport", "topic_score": float("nan")})
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8")
    assert write_jsonl(rows, out) == 1
    out.flush()
    lines = [strict_json(line) for line in raw.getvalue().decode("utf-8").splitlines()]
    assert [r["id"] for r in lines] == ["\ud800 lone surrogate", "K\u00f6ln", 7]
    assert "not a number" in lines[2]["error"]
    assert "K\u00f6ln".encode() in raw.getvalue()  # non-ASCII stays readable where it can


# ---- undecodable lines --------------------------------------------------------------------------

def long_stream_with_a_bad_line(kind: str) -> bytes:
    lines = [f"goal {i}" for i in range(3000)]
    if kind == "jsonl":
        lines = [json.dumps({"text": line}) for line in lines]
    if kind == "csv":
        lines = ["text"] + lines
    data = ("\n".join(lines) + "\n").encode()
    bad = data.index(b"goal 2499")
    return data[:bad] + b"\xff" + data[bad + 1:]


@pytest.mark.parametrize("kind", ["stdin", "jsonl", "csv"])
def test_one_undecodable_line_is_one_error_row_at_its_file_offset(bundle, tmp_path, monkeypatch, kind):
    data = long_stream_with_a_bad_line(kind)
    if kind == "stdin":
        rows = tag_stdin(bundle, monkeypatch, data)
    else:
        rows = tag_file(bundle, tmp_path, f"in.{kind}", data)
    assert len(rows) == 3000
    errors = [row for row in rows if "error" in row]
    assert len(errors) == 1 and errors[0]["id"] == 2500
    label = "stdin" if kind == "stdin" else str(tmp_path / f"in.{kind}")
    line, offset = 2500 + (kind == "csv"), data.index(b"\xff")
    assert errors[0]["error"].startswith(
        f"{label}: line {line}: not valid utf-8 (invalid start byte at byte {offset}); ")
    assert "--encoding" in errors[0]["error"]


# ---- the table ----------------------------------------------------------------------------------

def test_table_shows_control_characters_as_escapes():
    rows = [{"id": "\x1b[2J\x1b[31mred\r", "error": "bad\x00 text\u202e"},
            {"id": "ok\x07", "topic": "sp\x1bort", "topic_score": 0.5}]
    out = io.StringIO()
    write_table(rows, ["topic"], out)
    text = out.getvalue()
    assert not any(c in text for c in "\x1b\r\x00\u202e\x07")
    assert "\\x1b[2J\\x1b[31mred\\r" in text and "bad\\x00 text\\u202e" in text
    assert "ok\\x07" in text and "sp\\x1bort (0.50)" in text


def test_table_columns_line_up_when_an_answer_is_uncertain(bundle):
    job = predict.Job({**bundle, "metadata": {"tasks": {"topic": {"min_confidence": 0.99}}}}, "table")
    out = io.StringIO()
    records = [Record(id=1, text="goal in the final"), Record(id="x" * 40, text="shares fell")]
    predict.tag_stream(job, records, out, jobs=1)
    lines = out.getvalue().splitlines()
    assert "uncertain (best: sport" in lines[1]
    tone = lines[0].index("tone")
    assert all(line[tone - 1] == " " and line[tone:].split(" (")[0] in {"pos", "neg"} for line in lines[1:])


def test_table_cuts_a_cell_wider_than_the_limit_and_keeps_the_columns_in_line():
    rows = [{"id": 1, "topic": "x" * 80, "topic_score": 0.5, "tone": "pos", "tone_score": 0.5},
            {"id": 2, "topic": "short", "topic_score": 0.5, "tone": "neg", "tone_score": 0.5}]
    out = io.StringIO()
    write_table(rows, ["topic", "tone"], out)
    header, first, second = out.getvalue().splitlines()
    tone = header.index("tone")
    assert first[:tone].rstrip().endswith("x...") and len(first[29:tone]) == predict.MAX_COLUMN + 1
    assert first[tone:].startswith("pos (0.50)") and second[tone:].startswith("neg (0.50)")


# ---- checked before reading ---------------------------------------------------------------------

@pytest.mark.parametrize(("encoding", "name", "match"), [
    ("nope", "-", r"unknown encoding 'nope' \(--encoding\); try utf-8 or latin-1"),
    ("nope", "in.csv", "unknown encoding 'nope'"),
    ("nope", "in.txt", "unknown encoding 'nope'"),
    ("utf-16", "in.jsonl", "--encoding utf-16 cannot be read line by line; convert .*iconv"),
])
def test_bad_encoding_fails_up_front(model, tmp_path, capsys, encoding, name, match):
    for suffix in ("csv", "txt", "jsonl"):
        (tmp_path / f"in.{suffix}").write_text("text\ngoal\n")
    err = fails_cleanly(capsys, "--model", str(model), "--encoding", encoding,
                        "--input", name if name == "-" else str(tmp_path / name))
    assert re.search(match, err), err


def test_utf16_txt_file_still_reads(bundle, tmp_path):
    rows = tag_file(bundle, tmp_path, "in.txt", "goal in the final".encode("utf-16"), encoding="utf-16")
    assert rows[0]["topic"] == "sport"


def test_pipes_and_devices_are_refused_by_name(model, tmp_path, capsys):
    fifo, article = tmp_path / "pipe.jsonl", tmp_path / "in.txt"
    os.mkfifo(fifo)
    article.write_text("goal in the final")
    for name in ("/dev/zero", str(fifo)):
        err = fails_cleanly(capsys, "--model", str(model), "--input", str(article), "--input", name)
        assert f"{name}: not a regular file (a pipe, device or socket)" in err
        assert "--input -" in err


def test_output_that_is_a_folder_is_refused_before_anything_is_written(model, tmp_path, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    err = fails_cleanly(capsys, "--model", str(model), "-o", str(folder), "goal in the final")
    assert err == f"newstag: error: -o {folder} is a folder; give a file name (e.g. {folder}/tags.jsonl)"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out"]


# ---- huge records -------------------------------------------------------------------------------

def test_over_long_line_is_one_error_row_and_the_stream_goes_on(bundle, tmp_path, monkeypatch):
    data = b"goal in the final\n" + b"shares " * 500_000 + b"\nshares fell\n"  # 3.5 MB line
    for rows in (tag_stdin(bundle, monkeypatch, data, max_record_bytes=1_000_000),
                 tag_file(bundle, tmp_path, "in.jsonl", data, max_record_bytes=1_000_000)):
        assert [r["id"] for r in rows] == [1, 2, 3]
        assert rows[1]["error"].endswith(
            ": line 2: longer than the 1 MB record limit; raise --max-record-mb or split the record")
        assert rows[2].get("topic", "biz") == "biz"
    rows = tag_file(bundle, tmp_path, "in.txt", data, max_record_bytes=1_000_000)
    assert "longer than the 1 MB record limit" in rows[0]["error"]


def test_chunks_are_bounded_by_size_as_well_as_count(monkeypatch):
    monkeypatch.setattr(predict, "CHUNK_CHARS", 100)
    records = [Record(id=i, text="x" * 40) for i in range(7)]
    assert [len(chunk) for chunk in predict._chunks(records)] == [3, 3, 1]


@pytest.mark.parametrize("via", ["file", "stdin"])
def test_a_gigabyte_line_is_read_in_bounded_memory(model, tmp_path, via):
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as handle:  # sparse: one line of a billion NUL bytes, costing no disk
        handle.write(b'{"text": "goal in the final"}\n')
        handle.seek(1_000_000_000)
        handle.write(b'\n{"text": "shares fell"}\n')
    limit = 1_000_000_000  # about twice what predict needs; the old code held the line whole

    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    args = ["--input", str(path)] if via == "file" else ["--input", "-"]
    with open(path, "rb") as stdin:
        result = subprocess.run(
            [sys.executable, "-m", "newstag", "predict", "--model", str(model), "--max-record-mb", "2",
             *args], stdin=stdin, capture_output=True, text=True, preexec_fn=cap_memory,
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}, timeout=120, cwd=Path(model).parent)
    assert result.returncode == 0, result.stderr
    rows = [strict_json(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert "line 2: longer than the 2 MB record limit" in rows[1]["error"]
    assert rows[2]["topic"] == "biz"
