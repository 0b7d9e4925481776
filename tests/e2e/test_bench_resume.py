"""A stopped `newstag bench` resumes from its rows file, and never reuses a row measured on
another experiment file."""

import json

from tests.conftest import run_newstag


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_bench_resumes_from_its_rows_and_remeasures_when_the_experiment_changes(trained_sample):
    work, experiment, env = trained_sample["dir"], trained_sample["experiment"], trained_sample["env"]
    out = work / "reports" / "bench-resume"
    args = ("bench", "--quick", "--methods", "majority", "--out", str(out), str(experiment))
    run_newstag(*args, cwd=work, env=env)
    checkpoint = out.with_suffix(".rows.jsonl")
    first = _rows(checkpoint)
    assert {r["method"] for r in first} == {"majority"} and len(first) == 2  # topic and tone

    # a row already in the file is taken as it is: mark it, and the report shows the mark
    marked = [{**row, "accuracy": 0.123456} for row in first]
    checkpoint.write_text("".join(json.dumps(r) + "\n" for r in marked) + '{"torn', encoding="utf-8")
    run_newstag(*args, cwd=work, env=env)
    report = json.loads(out.with_suffix(".json").read_text())["results"]
    assert [r["accuracy"] for r in report] == [0.123456, 0.123456]

    # another experiment file: every row is measured again
    experiment.write_text(experiment.read_text() + "\n# changed\n")
    try:
        run_newstag(*args, cwd=work, env=env)
    finally:
        experiment.write_text(experiment.read_text().removesuffix("\n# changed\n"))
    report = json.loads(out.with_suffix(".json").read_text())["results"]
    assert all(r["accuracy"] != 0.123456 for r in report)
    assert {r["fingerprint"] for r in report}.isdisjoint({r["fingerprint"] for r in first})
