"""Training data and experiment files that try to exhaust memory, hang, or slip past type checks:
each is refused with one clear line, before the damage is done."""

import json
import logging
import os
import subprocess
import sys
import tarfile
import textwrap
import zipfile

import pytest

from newstag.config import load_config
from newstag.data.corpora import load_corpus, read_class_folders
from newstag.data.readers import read_table
from newstag.errors import NewstagError

MB = 1 << 20


def write_zip(path, files: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def tar_declaring(path, name: str, size: int, before: dict[str, bytes]):
    """A plain .tar whose last member's header declares `size` bytes that are not there."""
    blocks = []
    for member, data in before.items():
        info = tarfile.TarInfo(member)
        info.size = len(data)
        blocks += [info.tobuf(format=tarfile.GNU_FORMAT), data, bytes(-len(data) % 512)]
    info = tarfile.TarInfo(name)
    info.size = size
    path.write_bytes(b"".join([*blocks, info.tobuf(format=tarfile.GNU_FORMAT), bytes(1024)]))
    return path


ARTICLES = {"news/a/1.txt": b"first", "news/b/2.txt": b"second"}


# ---- archives and folders of class folders -------------------------------------------------------

def test_tar_member_declaring_gigabytes_is_refused_from_its_header(tmp_path):
    path = tar_declaring(tmp_path / "news.tar", "news/a/huge.txt", 10 << 30, ARTICLES)
    with pytest.raises(NewstagError, match=r"news/a/huge\.txt is 10,240\.0 MB, over the limit of "
                                           r"64 MB per file; .*data\.max_file_mb"):
        read_class_folders(path)


def test_zip_member_inflating_past_the_file_limit_is_refused(tmp_path):
    path = write_zip(tmp_path / "news.zip", {**ARTICLES, "news/a/zeros.txt": bytes(3 * MB)})
    assert path.stat().st_size < 100_000
    with pytest.raises(NewstagError, match=r"news/a/zeros\.txt is 3\.0 MB, over the limit of 1 MB"):
        read_class_folders(path, max_file_mb=1)
    assert len(read_class_folders(path, max_file_mb=3)) == 3


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_total_size_is_limited(tmp_path, kind):
    files = {f"news/{'ab'[i % 2]}/{i}.txt": bytes(300_000) for i in range(8)}
    if kind == "zip":
        source = write_zip(tmp_path / "news.zip", files)
    else:
        for name, data in files.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(data)
        source = tmp_path / "news"
    with pytest.raises(NewstagError, match=r"add up to more than the limit of 2 MB.*data\.max_total_mb"):
        read_class_folders(source, max_total_mb=2)


def test_files_that_are_no_articles_are_not_read_nor_counted(tmp_path):
    source = write_zip(tmp_path / "news.zip", {
        **ARTICLES, "news/a/scan.pdf": bytes(5 * MB), "news/.cache/x.txt": bytes(2 * MB),
        "README.txt": bytes(2 * MB)})
    frame = read_class_folders(source, max_file_mb=1, max_total_mb=1)
    assert sorted(frame["id"]) == ["a/1.txt", "b/2.txt"]


def test_a_zip_bomb_stays_within_memory(tmp_path):
    """A 150 MB member in a 150 KB zip, read under a memory cap lower than its size."""
    path = tmp_path / "news.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("news/b/ok.txt", b"fine")
        with archive.open("news/a/bomb.txt", "w") as member:
            for _ in range(150):
                member.write(bytes(MB))
    script = textwrap.dedent(f"""
        import resource
        from pathlib import Path
        from newstag.data.corpora import read_class_folders
        from newstag.errors import NewstagError
        used = int(next(line.split()[1] for line in open("/proc/self/status")
                        if line.startswith("VmData:"))) * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (used + 100 * {MB}, used + 100 * {MB}))
        try:
            read_class_folders(Path({str(path)!r}))
        except NewstagError as exc:
            print(exc)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-500:]
    assert "bomb.txt is 150.0 MB, over the limit of 64 MB per file" in result.stdout


def test_link_leading_outside_the_folder_is_skipped_and_counted(tmp_path, caplog):
    (tmp_path / "secret.txt").write_text("not an article")
    for name, data in ARTICLES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    (tmp_path / "news/a/leak.txt").symlink_to(tmp_path / "secret.txt")
    (tmp_path / "news/a/alias.txt").symlink_to(tmp_path / "news/b/2.txt")  # inside: an article
    (tmp_path / "news/b/elsewhere").symlink_to(tmp_path, target_is_directory=True)
    with caplog.at_level(logging.WARNING):
        frame = read_class_folders(tmp_path / "news")
    assert sorted(frame["id"]) == ["a/1.txt", "a/alias.txt", "b/2.txt"]
    assert "not an article" not in set(frame["text"])
    assert "skipped 2 link(s) or special file(s)" in caplog.text


def run_with_timeout(code: str) -> str:
    """Run code in a subprocess so a hang fails the test instead of blocking it."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr[-500:]
    return result.stdout


@pytest.mark.parametrize("name", ["news.tar.gz", "news.zip"])
def test_a_pipe_named_like_an_archive_does_not_hang(tmp_path, name):
    os.mkfifo(tmp_path / name)
    out = run_with_timeout(textwrap.dedent(f"""
        from pathlib import Path
        from newstag.data.corpora import read_class_folders
        from newstag.errors import NewstagError
        try:
            read_class_folders(Path({str(tmp_path / name)!r}))
        except NewstagError as exc:
            print(exc)
    """))
    assert "not a regular file or folder" in out


def test_a_pipe_inside_a_class_folder_is_skipped(tmp_path, caplog):
    for name, data in ARTICLES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    os.mkfifo(tmp_path / "news/a/pipe.txt")
    with caplog.at_level(logging.WARNING):
        assert sorted(read_class_folders(tmp_path / "news")["id"]) == ["a/1.txt", "b/2.txt"]
    assert "skipped 1 link(s)" in caplog.text


# ---- tables -------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda p: os.mkfifo(p), lambda p: p.symlink_to("/dev/zero")])
def test_table_must_be_a_regular_file(tmp_path, make):
    path = tmp_path / "data.csv"
    make(path)
    out = run_with_timeout(textwrap.dedent(f"""
        from newstag.data.readers import read_table
        from newstag.errors import NewstagError
        try:
            read_table({str(path)!r})
        except NewstagError as exc:
            print(exc)
    """))
    assert "data.csv: not a regular file" in out


def test_jsonl_line_over_the_record_limit_is_named(tmp_path):
    path = tmp_path / "data.jsonl"
    lines = [json.dumps({"text": "short", "label": "a"}), json.dumps({"text": "x" * (2 * MB)})]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(NewstagError, match=r"data\.jsonl: line 2 is over the limit of 1 MB per record"):
        read_table(path, max_record_mb=1)
    assert len(read_table(path, max_record_mb=3)) == 2


@pytest.mark.parametrize(("line", "match"), [
    ("[" * 100_000, r"line 2 is nested too deeply"),
    ('{"n": 1' + "0" * 5000 + "}", r"line 2 is not valid JSON \(Exceeds the limit"),
])
def test_jsonl_lines_json_cannot_hold_are_numbered(tmp_path, line, match):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "ok"}\n' + line + "\n")
    with pytest.raises(NewstagError, match=match):
        read_table(path)


def test_csv_field_over_the_record_limit_is_named(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("id,text\nr1,short\nr2," + "x" * (2 * MB) + "\n")
    with pytest.raises(NewstagError, match=r"data\.csv: line 3 is over the limit of 1 MB per record"):
        read_table(path, max_record_mb=1)
    path.write_text('id,text\nr1,short\nr2,"' + "x\n" * MB + '"\n')  # a field of many short lines
    with pytest.raises(NewstagError, match=r"data\.csv: line 3: a field is over the limit of 1 MB"):
        read_table(path, max_record_mb=1)


# ---- corpus options ----------------------------------------------------------------------------

@pytest.mark.parametrize(("dataset", "options", "match"), [
    ("20newsgroups", {"remove": "headers"}, r"'data\.options\.remove' should be a list of any of "
                                            r"headers, footers, quotes.*got str 'headers'"),
    ("20newsgroups", {"remove": [["headers"]]}, r"'data\.options\.remove' should be a list.*got list"),
    ("financial_phrasebank", {"agreement": [50]}, r"'data\.options\.agreement' should be one of 50, "
                                                  r"66, 75, all.*got list \[50\]"),
    ("financial_phrasebank", {"agreement": {"x": 1}}, r"'data\.options\.agreement'.*got dict"),
    ("financial_phrasebank", {"agreement": True}, r"'data\.options\.agreement'.*got bool"),
])
def test_corpus_options_of_the_wrong_type_are_named(tmp_path, dataset, options, match):
    with pytest.raises(NewstagError, match=match):
        load_corpus(dataset, tmp_path, options)


# ---- experiment files ----------------------------------------------------------------------------

VALID = "data: {path: data.csv}\ntasks: {topic: {labels: [a, b]}}\n"


def write(tmp_path, text: str):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_billion_laughs_is_refused(tmp_path):
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        levels.append(f"{level}: &{level} [{', '.join([f'*{previous}'] * 10)}]")
    text = "data: {path: data.csv}\ntasks:\n  topic:\n    grid:\n" + \
        "\n".join(f"      {line}" for line in levels) + "\n"
    with pytest.raises(NewstagError, match=r"exp\.yaml: aliases \(\*name\) expand to more than"):
        load_config(write(tmp_path, text))


def test_alias_that_contains_itself_is_refused(tmp_path):
    text = "data: {path: data.csv}\ntasks: {topic: {grid: {clf__C: &d [1, *d]}}}\n"
    with pytest.raises(NewstagError, match=r"exp\.yaml: line 2: an alias refers to the value"):
        load_config(write(tmp_path, text))


def test_small_aliases_still_work(tmp_path):
    text = ("data: {path: data.csv}\ntasks:\n  topic: {grid: &g {clf__C: [0.5, 1]}}\n"
            "  tone: {grid: *g}\n")
    assert load_config(write(tmp_path, text)).tasks[1].grid == {"clf__C": [0.5, 1]}


def test_duplicate_key_names_the_key_and_line(tmp_path):
    text = "data: {path: data.csv}\ntasks:\n  topic: {labels: [a, b]}\n  topic: {labels: [c]}\n"
    with pytest.raises(NewstagError, match=r"exp\.yaml: line 4: duplicate key 'topic' \(first on line 3\)"):
        load_config(write(tmp_path, text))


def test_experiment_file_must_be_small_and_regular(tmp_path):
    with pytest.raises(NewstagError, match=r"exp\.yaml: larger than 1024 KiB"):
        load_config(write(tmp_path, VALID + "# padding\n" * 120_000))
    os.mkfifo(tmp_path / "pipe.yaml")
    out = run_with_timeout(textwrap.dedent(f"""
        from newstag.config import load_config
        from newstag.errors import NewstagError
        try:
            load_config({str(tmp_path / "pipe.yaml")!r})
        except NewstagError as exc:
            print(exc)
    """))
    assert "pipe.yaml: not a regular file" in out


@pytest.mark.parametrize("labels", ["[a, [b, c]]", "[a, {b: 1}]", "[a, ~]"])
def test_labels_must_be_plain_values(tmp_path, labels):
    with pytest.raises(NewstagError,
                       match=r"'tasks\.topic\.labels\[1\]' should be text, a number or true/false"):
        load_config(write(tmp_path, VALID.replace("[a, b]", labels)))


def test_size_limits_are_configurable(tmp_path):
    data = load_config(write(tmp_path, VALID.replace("data.csv}", "data.csv, max_file_mb: 2}"))).data
    assert (data.max_file_mb, data.max_total_mb) == (2, 8192)
    with pytest.raises(NewstagError, match=r"'data\.max_total_mb' should be an integer"):
        load_config(write(tmp_path, VALID.replace("data.csv}", "data.csv, max_total_mb: lots}")))


@pytest.mark.parametrize("name", ["data.csv.gz", "data.jsonl.gz"])
def test_compressed_table_inflating_past_the_total_limit_is_refused(tmp_path, name):
    import gzip

    row = "r1,a,\n" if "csv" in name else '{"id": "r1", "label": "a"}\n'
    head = "id,label,text\n" if "csv" in name else ""
    path = tmp_path / name
    with gzip.open(path, "wt") as handle:
        handle.write(head + row * 200_000)  # about 5 MB in a few KB
    assert path.stat().st_size < 100_000
    with pytest.raises(NewstagError, match=rf"{name}: more than 1 MB of data \(after decompressing\)"):
        read_table(path, max_total_mb=1)
    assert len(read_table(path, max_total_mb=8)) == 200_000


@pytest.mark.parametrize("name", ["data.csv", "data.jsonl", "data.csv.gz"])
@pytest.mark.parametrize("streaming", [False, True])
def test_undecodable_byte_is_named_by_its_line_and_offset_in_the_file(tmp_path, name, streaming):
    import gzip

    from newstag.data.stream import Source

    rows = [f'{{"id": "r{i}", "text": "caf\u00e9 {i}"}}' if "jsonl" in name else f"r{i},caf\u00e9 {i}"
            for i in range(100_000)]  # 1.6 MB: the bad byte is past the decoders' first blocks
    head = "" if "jsonl" in name else "id,text\n"
    data = (head + "\n".join(rows) + "\n").encode()
    offset = data.rindex("\u00e9".encode())
    data = data[:offset] + b"\xe9" + data[offset + 2:]
    line = data[:offset].count(b"\n") + 1
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    expected = (rf"{name}: line {line} is not valid utf-8 \(invalid continuation byte at byte "
                rf"{offset}\); set data\.encoding in the experiment to the file's encoding \(e\.g\. "
                rf"encoding: latin-1\), or convert the file to utf-8")
    with pytest.raises(NewstagError, match=expected):
        if streaming:
            list(Source(str(path), chunk_rows=30_000).chunks())
        else:
            read_table(path)


def test_a_character_cut_by_the_block_end_does_not_shift_the_offset():
    import io

    from newstag.data.readers import not_decodable

    data = b"a" * (MB - 1) + "\u00e9".encode() + b"\nb\xff"  # the \u00e9 straddles the first block's end
    error = not_decodable("x.csv", "utf-8", io.BytesIO(data))
    assert f"x.csv: line 2 is not valid utf-8 (invalid start byte at byte {MB + 3})" in str(error)
