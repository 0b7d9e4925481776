"""report.html from a toy evaluation, `newstag review` on a toy corpus with flipped labels, and
`newstag info` / `review` bad input: fast, no MLflow."""

import json
import random
import sys
import types

import pandas as pd
import pytest

from newstag.cli import main
from newstag.config import load_config
from newstag.models.tally import TaskTally
from newstag.report import MISTAKES_NAME, leak_flags, mistake_rows, render, report_context, write_report
from newstag.review import confident_learning
from tests.code.test_bad_input import fails

TOPICS = {"sport": ["striker", "goal", "match", "league", "coach", "penalty", "season", "stadium"],
          "business": ["shares", "profit", "market", "investor", "revenue", "bank", "tariff", "deal"],
          "health": ["clinic", "vaccine", "patients", "doctor", "hospital", "virus", "nurse", "trial"]}
FILLER = ["the", "a", "on", "report", "said", "today", "after", "new", "week", "city"]
FLIPPED = {"r5": "business", "r22": "health", "r47": "sport", "r90": "business"}


def toy_corpus(rows_per_topic: int = 40) -> pd.DataFrame:
    """Articles of 12 words, 6 from their topic's list; FLIPPED rows carry a wrong label."""
    rng = random.Random(0)
    rows = []
    for n in range(rows_per_topic * len(TOPICS)):
        topic = list(TOPICS)[n % len(TOPICS)]
        words = rng.choices(TOPICS[topic], k=6) + rng.choices(FILLER, k=6)
        rng.shuffle(words)
        rows.append({"id": f"r{n}", "text": " ".join(words), "label": FLIPPED.get(f"r{n}", topic),
                     "tone": "neutral" if n % 2 else "positive"})
    return pd.DataFrame(rows)


def toy_project(folder, classifier: str = "logreg"):
    toy_corpus().to_csv(folder / "toy.csv", index=False)
    experiment = folder / "toy.yaml"
    experiment.write_text(f"data: {{path: toy.csv, id_column: id}}\n"
                          f"tasks:\n  topic: {{column: label, classifier: {classifier}}}\n"
                          f"  tone: {{classifier: logreg}}\n"
                          f"split: {{validation: 0.15, test: 0.15}}\n")
    assert main(["preprocess", str(experiment)]) == 0
    return experiment


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---- review -----------------------------------------------------------------------------------

def reviewed(capsys, experiment, *extra: str) -> tuple[list[dict], str]:
    """The JSON lines `newstag review` printed, and its log."""
    capsys.readouterr()
    assert main(["review", str(experiment), "--task", "topic", *extra]) == 0
    output = capsys.readouterr()
    return [json.loads(line) for line in output.out.splitlines()], output.err


def flipped_in_training(experiment) -> set[str]:
    """The flipped articles preprocess put in train or validation (review never reads test)."""
    config = load_config(experiment)
    kept = set()
    for split in ("train", "validation"):
        kept |= set(pd.read_parquet(config.processed_dir / f"{split}.parquet")["id"])
    return set(FLIPPED) & kept


@pytest.mark.parametrize("classifier", ["logreg", "linear_svm"])  # with and without predict_proba
def test_review_finds_the_flipped_labels(project, capsys, classifier):
    pytest.importorskip("cleanlab")
    experiment = toy_project(project, classifier)
    rows, _ = reviewed(capsys, experiment, "--top", "10")
    expected = flipped_in_training(experiment)
    assert expected and expected <= {row["id"] for row in rows}, rows
    for row in rows:
        if row["id"] in expected:
            assert row["suggested"] != row["label"] and row["confidence"] > row["label_probability"]
        assert set(row) == {"task", "id", "label", "suggested", "confidence", "label_probability", "text"}
    written = (project / "reports/toy/label_issues.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in written] == rows


def test_review_without_cleanlab_uses_confident_learning(project, capsys, monkeypatch):
    experiment = toy_project(project)
    monkeypatch.setitem(sys.modules, "cleanlab.filter", None)  # as if the extra were not installed
    rows, log = reviewed(capsys, experiment)
    assert flipped_in_training(experiment) <= {row["id"] for row in rows}
    assert len(rows) <= len(FLIPPED) + 3, "confident learning should list few clean articles"
    assert "confident learning, pruned by noise rate (built in)" in log


def test_review_keeps_other_tasks_rows_and_honours_top(project, capsys):
    experiment = toy_project(project)
    assert main(["review", str(experiment), "--task", "tone", "--top", "2"]) == 0
    rows, _ = reviewed(capsys, experiment, "--top", "1")
    assert len(rows) == 1
    written = [json.loads(line) for line in (project / "reports/toy/label_issues.jsonl").open()]
    assert {row["task"] for row in written} <= {"tone", "topic"} and rows[0] in written
    assert sum(row["task"] == "topic" for row in written) == 1


def test_a_task_reviewed_without_issues_shows_as_reviewed_and_no_row_is_lost(project):
    from newstag.report import SHOWN_ISSUES, issue_file, read_issues
    from newstag.review import write_issues

    config = load_config(toy_project(project))
    many = [{"task": "tone", "id": f"t{n}"} for n in range(SHOWN_ISSUES + 5)]
    write_issues(config, "tone", many)
    write_issues(config, "topic", [])  # reviewed: nothing disputed
    issues = read_issues(config.report_dir / "label_issues.jsonl")
    assert issues == {"tone": many, "topic": []}
    shown, totals = issue_file(config.report_dir / "label_issues.jsonl")
    assert shown == {"tone": many[:SHOWN_ISSUES], "topic": []} and totals == {"tone": SHOWN_ISSUES + 5}


def test_one_labels_yes_no_rule_by_hand():
    import numpy as np

    from newstag.review import noise_rate_flags

    given = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    p = np.array([.9, .8, .1, .1, .2, .1, .9, .3])  # article 2 given yes looks no; article 6 the reverse
    # yes threshold mean(.9, .8, .1) = .6; no threshold mean(.9, .8, .9, .1, .7) = .68: one
    # confident disagreement in each given state, so one of each is flagged, the most leaning
    assert np.flatnonzero(noise_rate_flags(given, np.column_stack([1 - p, p]))).tolist() == [2, 6]
    # a rare label whose threshold is near 0 (its one article scored .02): two articles given no
    # are confidently yes by it (.3, .6), but only the one leaning to yes (.6 > .4) is flagged,
    # with the label's own article (.02 for yes)
    rare = np.array([1, 0, 0, 0, 0, 0])
    q = np.array([.02, .1, .2, .3, .6, .05])
    assert np.flatnonzero(noise_rate_flags(rare, np.column_stack([1 - q, q]))).tolist() == [0, 4]


def test_confident_learning_rule_by_hand():
    import numpy as np

    given = np.array([0, 0, 0, 1, 1, 1])
    proba = np.array([[.9, .1], [.8, .2], [.2, .8],   # article 2 is labelled 0 but looks like 1
                      [.1, .9], [.3, .7], [.45, .55]])  # article 5: unsure, below no threshold
    # thresholds: label 0 mean(.9, .8, .2) = .633; label 1 mean(.9, .7, .55) = .717
    assert confident_learning(given, proba) == [2]


def test_review_bad_input(project, capsys):
    experiment = toy_project(project)
    fails(capsys, project, "review", str(experiment), "--task", "sport",
          match=r"--task 'sport': the experiment has no such task \(it has: topic, tone\)")
    fails(capsys, project, "review", str(experiment), "--task", "topic", "--top", "0",
          match=r"--top is 0; give 1 or more")
    (project / "fresh.yaml").write_text(experiment.read_text())
    fails(capsys, project, "review", "fresh.yaml", "--task", "topic",
          match=r"data/processed/fresh/manifest\.json: not found; run `newstag preprocess")


def test_evaluate_refuses_a_stale_bundle_and_a_composed_threshold_file_before_any_work(project, capsys):
    experiment = toy_project(project)
    assert main(["train", str(experiment), "--no-tracking"]) == 0
    renamed = experiment.read_text().replace("  tone: {classifier: logreg}", "  mood: {column: tone}")
    experiment.write_text(renamed)
    fails(capsys, project, "evaluate", str(experiment), "--no-tracking",
          match=r"models/toy/model\.joblib has tasks topic, tone but \S*toy\.yaml has topic, mood; retrain")
    (project / "both.yaml").write_text("compose: {topic: toy, mood: toy}\n")  # never trained
    fails(capsys, project, "evaluate", "both.yaml", "--no-tracking", "--target-precision", "0.9",
          "--write-experiment", match=r"both\.yaml: a composed experiment; run --write-experiment on")


# ---- info -------------------------------------------------------------------------------------

def test_info_bad_input(project, capsys):
    fails(capsys, project, "info", "models/none/model.joblib",
          match=r"models/none/model\.joblib: model not found")
    (project / "models").mkdir()
    fails(capsys, project, "info", "models", match=r"models: not a regular file; give the bundle file")
    (project / "models/model.joblib").write_bytes(b"\x80junk")
    fails(capsys, project, "info", "models/model.joblib",
          match=r"model\.joblib\.json: missing; the model cannot be verified")


# ---- report.html ------------------------------------------------------------------------------

def toy_evaluation(project, bundle):
    """A config, test split and summary shaped as evaluate gives them, for the toy bundle, and
    the topic task's most confident mistakes written as evaluate writes them."""
    (project / "exp.yaml").write_text("data: {path: x.csv}\ntasks: {topic: {}, tone: {}}\n")
    config = load_config(project / "exp.yaml")
    test = pd.DataFrame({"id": ["<b>id1</b>", "a2", "a3"],
                         "text": ["<script>alert(1)</script> the striker scored twice",
                                  "shares fell on the market", "goal scored in the final"],
                         "topic": ["biz", "biz", "sport"], "tone": ["neg", "neg", "pos"]})
    summary = {"tasks": {"topic": {"accuracy": 0.5, "f1_macro": 0.4, "test_rows": 3,
                                   "per_class": {"biz": {"precision": 1.0, "recall": 0.5,
                                                         "f1-score": 0.667, "support": 2}}}}}
    write_mistakes(project, bundle, test)
    return config, test, summary


def write_mistakes(project, bundle, test) -> None:
    tally = TaskTally("topic", bundle["pipelines"]["topic"])
    tally.add(test)
    out = project / "reports/exp"
    out.mkdir(parents=True, exist_ok=True)
    mistakes = mistake_rows(tally.pipeline, tally.most_confident_mistakes())
    (out / MISTAKES_NAME).write_text(json.dumps({"topic": mistakes}))


def test_report_escapes_text_and_says_what_is_missing(project, bundle):
    config, _, summary = toy_evaluation(project, bundle)
    page = write_report(config, bundle, summary).read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>id1</b>" not in page and "&lt;b&gt;id1&lt;/b&gt;" in page  # the mistake's id, escaped
    assert page.count("not available (evaluate wrote no figure)") == 6
    assert "Top terms not available" in page and "Not reviewed" in page
    assert "Label distribution per split" in page and "no manifest" in page
    assert "No test metrics available for this task." in page  # tone has none in the summary
    assert list(project.glob("reports/exp/.*")) == []  # written atomically: no temporary left


def test_a_task_without_mistakes_written_shows_them_not_available(project, bundle):
    config, _, summary = toy_evaluation(project, bundle)
    context = report_context(config, bundle, summary, project / "reports/exp")
    assert [task["mistakes"] is None for task in context["tasks"]] == [False, True]  # tone: none written


def test_report_flags_leaks_in_either_file_shape(project, bundle):
    config, _, summary = toy_evaluation(project, bundle)
    out = project / "reports/exp"
    (out / "top_terms.json").write_text(json.dumps(
        {"topic": {"sport": ["scored", ["reuters", 0.9]], "biz": [{"term": "shares", "weight": 0.5}]}}))
    (out / "leaks.json").write_text(json.dumps(
        {"topic": [{"label": "sport", "term": "reuters", "share_in_label": 0.8, "share_elsewhere": 0.0}]}))
    page = write_report(config, bundle, summary).read_text()
    assert 'class="term leak"' in page and "reuters" in page and "share_in_label 0.800" in page
    assert "Leak check not available" not in page
    assert leak_flags({"topic": {"sport": ["reuters"]}}) == {"topic": {"sport": {"reuters": ""}}}


def test_report_shows_explanations_when_explain_offers_them(project, bundle, monkeypatch):
    explain = types.ModuleType("newstag.explain")
    explain.explain_texts = lambda pipeline, texts, top, labels: [[["striker", 0.41]] for _ in texts]
    monkeypatch.setitem(sys.modules, "newstag.explain", explain)
    config, test, summary = toy_evaluation(project, bundle)
    page = render(report_context(config, bundle, summary, project / "reports/exp"))
    assert "striker 0.410" in page
    explain.explain_texts = lambda pipeline, texts: []  # another signature: the page still builds
    write_mistakes(project, bundle, test)
    page = render(report_context(config, bundle, summary, project / "reports/exp"))
    assert "Most confident mistakes" in page and "striker 0.410" not in page



def multi_label_summary(summary: dict) -> dict:
    """The toy summary with tone scored as a multi-label task is."""
    tone = {"f1_micro": 0.8, "f1_macro": 0.7, "f1_samples": 0.75, "hamming_loss": 0.0412,
            "accuracy": 0.6, "multi_label": True, "test_rows": 3,
            "per_class": {"pos": {"precision": 1.0, "recall": 0.5, "f1-score": 0.667, "support": 2}}}
    return {"tasks": {**summary["tasks"], "tone": tone}}


def test_a_multi_label_task_shows_its_figure_and_readable_scores(project, bundle):
    config, _, summary = toy_evaluation(project, bundle)
    out = project / "reports/exp"
    (out / "label_f1_tone.png").write_bytes(b"\x89PNG")
    page = write_report(config, bundle, multi_label_summary(summary)).read_text()
    tone = page.split("Task: tone")[1]
    assert tone.count('src="data:image/png;base64,') == 1 and "F1 per label" in tone
    assert "not available (evaluate wrote no figure)" not in tone
    assert "each label is a yes/no decision with its own threshold and Platt sigmoid" in tone
    for shown in ("micro-F1", "samples-F1", "Hamming loss", "0.0412",
                  "accuracy (exact match of the label set)"):
        assert f">{shown}<" in tone, shown
    assert "f1_micro" not in tone and "multi_label" not in tone and "hamming_loss" not in tone
    assert page.split("Task: tone")[0].count("not available (evaluate wrote no figure)") == 3


def test_label_issues_are_capped_and_a_multi_label_rows_labels_explained(project, bundle):
    from newstag.report import SHOWN_ISSUES

    config, _, summary = toy_evaluation(project, bundle)
    rows = [{"task": "topic", "id": f"a{n}", "label": "biz", "suggested": "sport", "confidence": 0.36,
             "label_probability": 0.21, "text": "shares"} for n in range(SHOWN_ISSUES + 7)]
    rows.append({"task": "tone", "id": "m1", "label": ["neg", "pos"], "suggested": ["neg", "neutral"],
                 "confidence": 0.96, "label_probability": 0.04, "doubtful": {"pos": 0.04},
                 "missing": {"neutral": 0.81}, "text": "fell"})
    (project / "reports/exp/label_issues.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    page = write_report(config, bundle, multi_label_summary(summary)).read_text()
    topic, tone = page.split("Task: tone")
    assert topic.count('<code class="key">a') == SHOWN_ISSUES
    assert f'<code class="key">a{SHOWN_ISSUES - 1}</code>' in topic
    assert f"Showing the first {SHOWN_ISSUES} of {SHOWN_ISSUES + 7}" in topic
    assert "the rest are in <code>label_issues.jsonl</code>" in topic
    assert "confidently" not in page and "above that label's threshold" in " ".join(topic.split())
    assert "(given, probably wrong)" in tone and "(not given, probably right)" in tone
    assert ">pos</span> 0.040" in tone and ">neutral</span> 0.810" in tone and "Showing the first" not in tone


def test_the_page_says_which_labels_the_leak_check_could_not_judge(project, bundle):
    from newstag.report import leak_check

    config, _, summary = toy_evaluation(project, bundle)
    out = project / "reports/exp"
    (out / "top_terms.json").write_text(json.dumps({"topic": {"biz": ["shares"], "sport": ["goal"]}}))
    (out / "leaks.json").write_text(json.dumps({"topic": {}}))
    page = write_report(config, bundle, summary).read_text()
    assert "Leak check not judged for this task: the test split has 3 articles" in page
    assert "at least 10 test articles with the label and 100 without it" in page
    per_label = {"biz": {"support": 5}, "sport": {"support": 200}, "health": {"support": 295}}
    summary["tasks"]["topic"].update(test_rows=500, per_class=per_label)
    page = write_report(config, bundle, summary).read_text()
    assert "Leak check not judged for this task" not in page and "terms that look like leaks" in page
    assert page.count(">not judged: ") == 1 and ">not judged: 5 test articles with the label<" in page
    check = leak_check({"test_rows": 500, "per_class": per_label})
    assert check["labels"] == {"biz": "5 test articles with the label"} and not check["all"]
    assert leak_check({"test_rows": 150, "per_class": {"biz": {"support": 60}}})["labels"] == \
        {"biz": "90 test articles without it"}
    assert leak_check({}) is None


def test_a_char_ngrams_edge_spaces_are_shown():
    from newstag.report import _shown_term

    shown = [_shown_term(term) for term in ("char: film", "char:film", "char:film ", "film ", "word:a b")]
    assert shown == ["char:␣film", "char:film", "char:film␣", "film␣", "word:a b"]
    assert _shown_term("char: ") == "char: "


def test_labels_and_ids_do_not_break_mid_word(project, bundle):
    config, _, summary = toy_evaluation(project, bundle)
    page = write_report(config, bundle, summary).read_text()
    assert "overflow-wrap: anywhere; word-break" not in page
    assert '<td class="excerpt"><code class="key">&lt;b&gt;id1&lt;/b&gt;</code><br>' in page
    assert '<td class="key">biz</td>' in page

# ---- figures ----------------------------------------------------------------------------------

def reliability_table(accuracy: float) -> list[dict]:
    """Ten bins, the top three filled, every bin at `accuracy`: both series' points coincide."""
    return [{"low": b / 10, "high": (b + 1) / 10, "count": 40 if b >= 7 else 0,
             "confidence": b / 10 + 0.05 if b >= 7 else None, "accuracy": accuracy if b >= 7 else None}
            for b in range(10)]


def test_reliability_values_stay_inside_the_axes_and_apart():
    from newstag.plots import reliability_figure

    fig = reliability_figure("topic", {"calibrated": reliability_table(1.0),
                                       "uncalibrated": reliability_table(1.0)},
                             {"calibrated": 0.01, "uncalibrated": 0.2})
    ax, renderer = fig.axes[0], fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    boxes = [text.get_window_extent(renderer) for text in ax.texts]
    assert len(boxes) == 6  # three bins of two series, each with its value
    assert all(frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1) for box in boxes)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert "confidence of the chosen label" in ax.get_title() and "top-label" not in ax.get_title()


def test_coverage_marks_are_written_in_the_legend_not_across_the_curves():
    import numpy as np

    from newstag.plots import coverage_figure

    x = np.linspace(0.01, 1, 50)
    curves = {"calibrated scores": (x, 1 - 0.1 * x), "uncalibrated scores": (x, 1 - x / 5)}
    fig = coverage_figure("topic", curves, {"min_confidence 0.886": (0.71, 0.978)})
    ax = fig.axes[0]
    assert len(ax.texts) == 0  # nothing written inside the axes
    legend = [text.get_text() for text in ax.get_legend().texts]
    assert "min_confidence 0.886: coverage 0.71, accuracy 0.978" in legend, legend


def test_a_confusion_matrix_of_many_labels_takes_the_whole_row_at_the_size_it_is_shown(tmp_path):
    import numpy as np

    from newstag.plots import confusion_figure
    from newstag.report import figures

    labels = [f"group.{n}" for n in range(20)]
    width = confusion_figure("topic", 300 * np.eye(20, dtype=int), labels).get_size_inches()[0]
    assert width * 110 <= 1100  # about the page's width at save_figure's dpi: shown unshrunk
    assert [figure["wide"] for figure in figures(tmp_path, "topic", False, 20)] == [True, False, False]
    assert [figure["wide"] for figure in figures(tmp_path, "topic", False, 6)] == [False] * 3
    assert [figure["title"] for figure in figures(tmp_path, "topics", True, 20)] == ["F1 per label"]
