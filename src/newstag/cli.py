"""The `newstag` command: one subcommand per stage, each a thin layer over its module.

Results go to stdout, logs and errors to stderr. A NewstagError becomes a one-line message and
exit code 1 (the traceback only with --debug); Ctrl-C exits 130 and SIGTERM 143, both without
leaving partial files. A file that cannot be read or written (read-only folder, full disk) is
named in one line too.
"""

import argparse
import json
import logging
import signal
import sys

from newstag import __version__
from newstag.errors import NewstagError, Terminated

DEFAULT_EXPERIMENT = "experiments/default.yaml"
DEFAULT_MODEL = "models/default/model.joblib"
log = logging.getLogger("newstag")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="newstag", description="Tag news articles by topic and tone.")
    parser.add_argument("--version", action="version", version=f"newstag {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in (("preprocess", "validate, clean, de-duplicate and split the raw data"),
                            ("train", "fit every task, log the run to MLflow, save the bundle"),
                            ("evaluate", "score the bundle on the test split, write reports")):
        stage = commands.add_parser(name, help=help_text, description=help_text)
        stage.add_argument("experiment", nargs="?", default=DEFAULT_EXPERIMENT,
                           help=f"experiment YAML (default: {DEFAULT_EXPERIMENT})")
        if name == "preprocess":
            stage.add_argument("--data-dir", help="folder holding the known corpora "
                                                  "(default: $NEWSTAG_DATA_DIR or data/raw)")
        else:
            stage.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
        if name == "train":
            stage.add_argument("--format", choices=("joblib", "skops"), default="joblib",
                               help="skops: a bundle to share, loadable without running code")
            stage.add_argument("--wait", action="store_true",
                               help="if this experiment is already training, wait instead of failing")
        if name == "evaluate":
            stage.add_argument("--target-precision", metavar="P",
                               help="pick each task's lowest confidence threshold whose answered "
                                    "validation articles reach precision P (e.g. 0.95, or per task "
                                    "topic=0.95,tone=0.9) and report its test coverage and accuracy")
            stage.add_argument("--write-experiment", action="store_true",
                               help="with --target-precision: write experiments/<name>.threshold.yaml "
                                    "with min_confidence set")
    _add_search(commands)
    _add_registry(commands)
    _add_predict(commands)
    _add_bench(commands)
    _add_explain(commands)
    info = commands.add_parser("info", help="print a bundle's model card and metadata",
                               description="Print the model card beside a bundle and its metadata "
                                           "(labels, chosen parameters, calibration, sha256 check). "
                                           "Does not load the model.")
    info.add_argument("model", nargs="?", default=DEFAULT_MODEL, help=f"bundle (default: {DEFAULT_MODEL})")
    review = commands.add_parser("review", help="list training articles whose label looks wrong",
                                 description="Out-of-fold predictions on train + validation; list the "
                                             "articles whose label the model disputes (confident "
                                             "learning), as "
                                             "JSON lines (also reports/<exp>/label_issues.jsonl).")
    review.add_argument("experiment", nargs="?", default=DEFAULT_EXPERIMENT,
                        help=f"experiment YAML, already preprocessed (default: {DEFAULT_EXPERIMENT})")
    review.add_argument("--task", required=True, help="the task whose labels to review, e.g. topic")
    review.add_argument("--top", type=int, default=50, metavar="N",
                        help="list at most N articles, most doubtful first (default: 50)")
    review.add_argument("--no-tracking", action="store_true",
                        help="do not add the list and the rebuilt report to the evaluation's MLflow run")
    commands.add_parser("schema", help="print the JSON Schema of experiment files",
                        description="Print the JSON Schema of experiment files, for editors: "
                                    "newstag schema > experiments/schema.json")
    download = commands.add_parser("download", help="fetch a public corpus and verify its sha256")
    download.add_argument("name", help="20newsgroups, ag_news, financial_phrasebank, hyperpartisan, ...")
    download.add_argument("--data-dir", help="where corpora live (default: $NEWSTAG_DATA_DIR or data/raw)")
    download.add_argument("--mirror", help="fetch MIRROR/<corpus>/<file> instead of the original URLs")
    return parser


def _add_search(commands) -> None:
    text = "search each task's `search:` space by cross-validation, write <name>.best.yaml"
    search = commands.add_parser("search", help=text, description=text)
    search.add_argument("experiment", nargs="?", default=DEFAULT_EXPERIMENT,
                        help=f"experiment YAML, already preprocessed (default: {DEFAULT_EXPERIMENT})")
    search.add_argument("--jobs", type=int, default=1, metavar="N", help="candidates scored at once")
    _add_dask_options(search, "dask: fit each candidate's folds on a Dask cluster (pip install "
                              "'newstag[dask]'); --jobs 1 gives the local run's results")
    search.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")


def _add_registry(commands) -> None:
    text = ("set the `champion` alias on the newest registered version of newstag-<exp> when it beats "
            "the champion on the current test split")
    promote = commands.add_parser("promote", help=text, description=text + (
        ": both re-scored on the same articles, mean test macro-F1 over tasks, paired bootstrap"))
    promote.add_argument("experiment", nargs="?", default=DEFAULT_EXPERIMENT,
                         help=f"experiment YAML, evaluated (default: {DEFAULT_EXPERIMENT})")
    promote.add_argument("--force", action="store_true",
                         help="promote the newest version even when it does not beat the champion")
    promote.add_argument("--reason", help="why, recorded with the promotion (default: the comparison)")
    promote.add_argument("--check", action="store_true",
                         help="change nothing: print the champion's model URI, or fail if there is none")
    text = "start the MLflow UI over the store, lean (one worker, no job execution), and print its link"
    ui = commands.add_parser("ui", help=text, description=text)
    ui.add_argument("experiment", nargs="?", default=DEFAULT_EXPERIMENT,
                    help=f"experiment YAML whose runs to link to (default: {DEFAULT_EXPERIMENT})")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)


def _add_bench(commands) -> None:
    bench = commands.add_parser("bench", help="compare newstag with a baseline, fastText, VADER",
                                description="Score every method on each experiment's split or folds.")
    bench.add_argument("experiments", nargs="*", help="experiment YAMLs (already preprocessed)")
    bench.add_argument("--load", type=int, metavar="N",
                       help="instead: stream N articles through `newstag predict` from stdin")
    bench.add_argument("--model", default=DEFAULT_MODEL, help="the bundle --load uses")
    bench.add_argument("--serve", type=int, metavar="N",
                       help="instead: serve --serve-model with `mlflow models serve` and time N "
                            "one-article requests (p50/p95 latency)")
    bench.add_argument("--serve-model", default="models:/newstag-default@champion",
                       help="the registered model --serve serves (default: models:/newstag-default@champion)")
    bench.add_argument("--scale", metavar="GB,GB,...",
                       help="instead: streaming preprocess + training on synthetic corpora of these "
                            "sizes (GB of text, built under data/scale/ from $NEWSTAG_DATA_DIR's BBC "
                            "News): MB/s and peak memory per size")
    bench.add_argument("--epochs", type=int, default=3, help="--scale: training epochs (default: 3)")
    bench.add_argument("--in-memory-gb", type=float, default=0.5, metavar="GB",
                       help="--scale: compare with the in-memory TF-IDF model on the largest size up "
                            "to this (default: 0.5)")
    bench.add_argument("--quick", action="store_true",
                       help="a small subset: checks the code, not the science")
    bench.add_argument("--methods",
                       help="comma-separated subset of newstag,newstag-auto,baseline,fasttext,vader,majority")
    bench.add_argument("--out", default="reports/bench",
                       help="writes OUT.json and OUT.md, and OUT.rows.jsonl as rows finish: a stopped run "
                            "resumes from it (default: reports/bench)")


def _add_explain(commands) -> None:
    text = "list the strongest terms of each label of a saved model"
    explain = commands.add_parser("explain", help=text, description=text)
    explain.add_argument("model", nargs="?", default=DEFAULT_MODEL,
                         help=f"bundle (default: {DEFAULT_MODEL})")
    explain.add_argument("--task", help="only this task (default: every task)")
    explain.add_argument("--top", type=int, default=15, metavar="N", help="terms per label (default: 15)")
    explain.add_argument("-f", "--format", choices=("jsonl", "table"), default="jsonl")


def _add_predict(commands) -> None:
    predict = commands.add_parser("predict", help="tag text, files or stdin with a saved model",
                                  description="Tag articles. Output: one JSON object per article.")
    predict.add_argument("texts", nargs="*", metavar="TEXT", help="article text(s) to tag")
    predict.add_argument("-i", "--input", action="append", default=[], metavar="FILE",
                         help=".txt (one article), .jsonl (field 'text', optional 'id'), .csv, "
                              "or - for stdin (one article per line); repeatable")
    predict.add_argument("-m", "--model", default=DEFAULT_MODEL,
                         help=f"bundle, or a registered model, e.g. models:/newstag-default@champion "
                              f"(default: {DEFAULT_MODEL})")
    predict.add_argument("-f", "--format", choices=("jsonl", "table"), default="jsonl")
    predict.add_argument("--text-column", default="text", help="CSV column holding the text")
    predict.add_argument("--encoding", default="utf-8", help="encoding of the input files and stdin")
    predict.add_argument("--strict", action="store_true",
                         help="fail on the first bad record instead of writing an error row")
    predict.add_argument("--explain", action="store_true",
                         help='add "<task>_terms": the 5 terms that pushed each label most, with '
                              "their contribution (coefficient x TF-IDF); the table shows 3")
    predict.add_argument("--max-record-mb", type=_positive_mb, default=10, metavar="MB",
                         help="a longer record (line, CSV row or .txt file) becomes an error row, "
                              "so memory stays bounded (default: 10)")
    predict.add_argument("-j", "--jobs", type=_jobs, default=None, metavar="N",
                         help="worker processes (default: one per core for inputs over "
                              "4,000 articles, none below); the output is the same for any N")
    predict.add_argument("-o", "--output", metavar="FILE",
                         help="write the rows to FILE (complete, or not at all) instead of stdout")
    predict.add_argument("--output-dir", metavar="DIR",
                         help="batch: tag each --input file (globs allowed, e.g. 'archive/*.jsonl') "
                              "into DIR/<name>.jsonl, each written whole; run again to resume "
                              "(files done are skipped)")
    _add_dask_options(predict, "with --output-dir, dask: one task per file on a Dask cluster "
                               "(pip install 'newstag[dask]'); paths must be shared with the workers")


def _add_dask_options(parser, backend_help: str) -> None:
    """--backend and --scheduler, shared by search and batch predict."""
    parser.add_argument("--backend", choices=("local", "dask"), default="local", help=backend_help)
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="the Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: "
                             "$DASK_SCHEDULER_ADDRESS)")


def _jobs(value: str) -> int:
    try:
        jobs = int(value)
    except ValueError:
        jobs = 0
    if not 1 <= jobs <= 256:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of processes from 1 to 256")
    return jobs


def _positive_mb(value: str) -> float:
    try:
        size = float(value)
    except ValueError:
        size = 0.0
    if not 0 < size <= 100_000:
        raise argparse.ArgumentTypeError(f"{value!r} is not a size in MB between 0 and 100000")
    return size


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s", force=True)
    _quiet_libraries(args.debug)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return COMMANDS[args.command](args)
    except NewstagError as exc:
        if args.debug:
            raise
        print(f"newstag: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print("newstag: interrupted; no file was left half-written (a command that writes several "
              "files may have replaced some of them: run it again to finish)", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        return 0
    except OSError as exc:
        if args.debug or exc.strerror is None:
            raise
        where = "writing the output" if exc.filename is None else _written(exc.filename)
        print(f"newstag: error: {where}: {exc.strerror}; check the folder's "
              f"permissions and free disk space, then run again (no file was left half-written)",
              file=sys.stderr)
        return 1


def _written(filename) -> str:
    """The folder, when the file is one of newstag's hidden temporary files (.name.xxxx.tmp):
    its name means nothing to the user, the folder they can fix does."""
    from pathlib import Path

    path = Path(str(filename))
    return f"{path.parent}/" if path.name.startswith(".") and ".tmp" in path.name else str(path)


def _terminate(signum, frame):
    raise Terminated()


def _quiet_libraries(debug: bool) -> None:
    if not debug:
        for name in ("mlflow", "alembic", "urllib3", "matplotlib", "git"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # It logs a database failure with its traceback; newstag reports it in one line instead.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def run_preprocess(args) -> int:
    from newstag.config import load_config
    from newstag.preprocess import describe_manifest, preprocess

    config = load_config(args.experiment)
    manifest = preprocess(config, args.data_dir)
    print(describe_manifest(manifest, config))
    return 0


def run_train(args) -> int:
    from newstag.config import load_config
    from newstag.train import bundle_path, train

    config = load_config(args.experiment)
    sidecar = train(config, tracking=not args.no_tracking, fmt=args.format, wait=args.wait)
    for task, info in sidecar["tasks"].items():
        print(f"{task}: best {info['best_params'] or 'defaults'}, validation macro-F1 "
              f"{info['validation']['f1_macro']:.3f}")
    print(f"saved {bundle_path(config, args.format)}; next: newstag evaluate {args.experiment}")
    return 0


def run_search(args) -> int:
    from newstag.config import load_config
    from newstag.search import search_experiment

    if args.jobs < 1:
        raise NewstagError(f"--jobs is {args.jobs}; give 1 or more")
    config = load_config(args.experiment)
    client = None
    if args.backend == "dask":
        from newstag.cluster import connect, scheduler_address

        client = connect(scheduler_address(args.scheduler))
        log.info("search: fitting folds on the Dask cluster %s (%d workers)", client.scheduler.address,
                 len(client.scheduler_info()["workers"]))
    try:
        results, path = search_experiment(config, jobs=args.jobs, tracking=not args.no_tracking,
                                          client=client)
    finally:
        if client is not None:
            client.close()
    for task, result in results.items():
        best = result.best
        print(f"{task}: best {best.settings()}, CV {result.scoring} {best.mean(result.scoring):.4f} "
              f"± {best.sd(result.scoring):.4f} ({len(result.candidates)} candidates, "
              f"{result.seconds:.0f} s)")
    print(f"written {path}; next: make all EXP={path}")
    return 0


def run_evaluate(args) -> int:
    from newstag.config import load_config
    from newstag.evaluate import evaluate, format_summary, parse_target_precision

    targets = parse_target_precision(args.target_precision) if args.target_precision is not None else None
    config = load_config(args.experiment)
    summary = evaluate(config, tracking=not args.no_tracking, target_precision=targets,
                       write_experiment=args.write_experiment)
    print(format_summary(summary))
    print(f"reports in {config.report_dir}/")
    return 0


def run_predict(args) -> int:
    from newstag.data.records import read_records
    from newstag.models.bundle import load_for_prediction
    from newstag.predict import Job, tag_stream

    if not args.texts and not args.input:
        raise NewstagError("nothing to tag: give TEXT, --input FILE, or --input - for stdin")
    if args.output_dir is not None or args.backend == "dask":
        return _run_batch(args)
    _check_output(args.output)
    records = read_records(args.texts, args.input, args.text_column, args.encoding,
                           max_record_bytes=int(args.max_record_mb * 1_000_000))
    if args.model.startswith("models:/"):  # the registry: the only predict path that imports MLflow
        from newstag.registry import load_registered

        bundle = load_registered(args.model)
    else:
        bundle = load_for_prediction(args.model)
    explainers = None
    if args.explain:
        from newstag.explain import explainers_for

        explainers = explainers_for(bundle["pipelines"], args.model, "retrain it, or drop --explain")
    job = Job(bundle, args.format, strict=args.strict, explainers=explainers)
    if args.output:
        from newstag.data.files import atomic_path

        with atomic_path(args.output) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as out:
            errors = tag_stream(job, records, out, args.jobs)
    else:
        job.encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
        errors = tag_stream(job, records, sys.stdout, args.jobs)
    if errors:
        log.warning("%d record(s) could not be tagged; see the 'error' rows", errors)
    return 0


def _check_output(path: str | None) -> None:
    """Refuse a folder for -o before anything is read or written: the rows go to a temporary file
    beside PATH first, and the rename over a folder would fail only at the end, naming that file."""
    from pathlib import Path

    if path is not None and Path(path).is_dir():
        raise NewstagError(f"-o {path} is a folder; give a file name (e.g. {Path(path) / 'tags.jsonl'})")


def _run_batch(args) -> int:
    from newstag.batch import Options, run_batch

    if args.output_dir is None:
        raise NewstagError("--backend dask tags files into a folder: add --output-dir DIR")
    for given, flag in ((args.texts, "TEXT arguments"), (args.output, "--output"),
                        (args.format != "jsonl", "--format table")):
        if given:
            raise NewstagError(f"--output-dir writes JSON lines per input file; drop {flag}")
    options = Options(args.text_column, args.encoding, args.strict, args.explain, args.max_record_mb)
    client = None
    if args.backend == "dask":
        from newstag.cluster import connect, scheduler_address

        client = connect(scheduler_address(args.scheduler))
        log.info("predict: tagging files on the Dask cluster %s (%d workers)",
                 client.scheduler.address, len(client.scheduler_info()["workers"]))
    try:
        summary = run_batch(args.model, args.input, args.output_dir, options, args.jobs, client,
                            load_bundle=_load_model)
    finally:
        if client is not None:
            client.close()
    rate = f"{summary.files / summary.seconds:.1f} files/s, {summary.rows / summary.seconds:.0f} " \
           f"articles/s" if summary.files and summary.seconds else "nothing new"
    log.info("batch: tagged %d file(s), %d article(s) into %s in %.1f s (%s); %d skipped",
             summary.files, summary.rows, args.output_dir, summary.seconds, rate, summary.skipped)
    if summary.errors:
        log.warning("%d record(s) could not be tagged; see the 'error' rows", summary.errors)
    return 0


def _load_model(model: str) -> dict:
    if model.startswith("models:/"):
        from newstag.registry import load_registered

        return load_registered(model)
    from newstag.models.bundle import load_for_prediction

    return load_for_prediction(model)


def run_promote(args) -> int:
    from newstag.config import load_config
    from newstag.registry import champion_uri, promote

    if args.check:
        print(champion_uri(load_config(args.experiment)))
        return 0
    print(promote(load_config(args.experiment), force=args.force, reason=args.reason))
    return 0


def run_ui(args) -> int:
    from newstag.config import load_config
    from newstag.tracking import start_ui

    experiment = load_config(args.experiment).mlflow.experiment
    return start_ui(experiment, args.host, args.port)


def run_explain(args) -> int:
    import json

    from newstag.explain import explainers_for
    from newstag.models.bundle import load_bundle

    if args.top < 1:
        raise NewstagError(f"--top is {args.top}; give 1 or more")
    pipelines = load_bundle(args.model)["pipelines"]
    if args.task is not None:
        if args.task not in pipelines:
            raise NewstagError(f"{args.model}: no task {args.task!r}; its tasks are: "
                               f"{', '.join(pipelines)}")
        pipelines = {args.task: pipelines[args.task]}
    for task, explainer in explainers_for(pipelines, args.model).items():
        for label, terms in explainer.strongest_terms(args.top).items():
            pairs = [[term, round(weight, 4)] for _, term, weight in terms]
            if args.format == "table":
                print(f"{task:<10} {label:<16} " + ", ".join(f"{t} {w:.2f}" for t, w in pairs))
            else:
                print(json.dumps({"task": task, "label": label, "terms": pairs}, ensure_ascii=False))
    return 0


def run_bench(args) -> int:
    from pathlib import Path

    from newstag import bench

    if args.load:
        return _run_load_test(args)
    if args.serve:
        return _run_serve_test(args)
    if args.scale:
        return _run_scale_test(args)
    if not args.experiments:
        raise NewstagError("name the experiments to bench, e.g. experiments/bbc_news.yaml")
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    bench.require_bench_extras(methods)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = bench.bench(args.experiments, quick=args.quick, methods=methods,
                       checkpoint=out.with_suffix(".rows.jsonl"))
    print(bench.write_report(rows, out, quick=args.quick))
    print(f"\nwritten {args.out}.json and {args.out}.md")
    return 0


def _run_load_test(args) -> int:
    from pathlib import Path

    from newstag.bench import cold_start, load_markdown, load_test
    from newstag.data.files import write_json, write_text

    sample = "data/sample/articles.jsonl"
    with open(sample, encoding="utf-8") as handle:
        texts = [f"{row['title']}. {row['text']}" for row in map(json.loads, handle)]
    streaming = {str(jobs): load_test(args.model, args.load, texts, jobs) for jobs in (1, 2)}
    streaming["speedup"] = streaming["2"]["articles_per_second"] / streaming["1"]["articles_per_second"]
    streaming["identical_output"] = streaming["1"]["output_sha256"] == streaming["2"]["output_sha256"]
    result = {"model": args.model, "input": f"{sample}, cycled", "cold_start": cold_start(args.model),
              "streaming": streaming}
    write_json(f"{args.out}-load.json", result)
    table = load_markdown(result)
    write_text(Path(f"{args.out}-load.md"), table)
    print(table + f"\nwritten {args.out}-load.json and {args.out}-load.md")
    return 0


def _run_scale_test(args) -> int:
    from pathlib import Path

    from newstag.data.corpora import data_dir
    from newstag.data.files import write_json
    from newstag.scale import bench_scale, table

    try:
        sizes = [float(size) for size in args.scale.split(",")]
    except ValueError:
        raise NewstagError(f"--scale {args.scale!r}: give sizes in GB, e.g. 0.5,1,2,4") from None
    if not sizes or min(sizes) <= 0:
        raise NewstagError(f"--scale {args.scale!r}: give sizes in GB above 0, e.g. 0.5,1,2,4")
    result = bench_scale(sizes, Path(data_dir(None)), epochs=args.epochs, in_memory_gb=args.in_memory_gb)
    write_json(f"{args.out}.json", result)
    print(table(result))
    print(f"\nwritten {args.out}.json")
    return 0


def _run_serve_test(args) -> int:
    from newstag.bench import serve_latency
    from newstag.data.files import write_json

    with open("data/sample/articles.jsonl", encoding="utf-8") as handle:
        first = json.loads(handle.readline())
    result = serve_latency(args.serve_model, f"{first['title']}. {first['text']}", args.serve)
    write_json(f"{args.out}-serve.json", result)
    print(f"serve: {result['requests']} one-article requests to {result['model']}: p50 "
          f"{result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms (server up in "
          f"{result['startup_seconds']:.1f} s; written {args.out}-serve.json)")
    return 0


def run_download(args) -> int:
    from newstag.data.corpora import data_dir
    from newstag.download import download

    folder = download(args.name, data_dir(args.data_dir), args.mirror)
    print(f"{args.name}: verified and saved in {folder}")
    return 0


def run_info(args) -> int:
    from newstag.card import info

    text, verified = info(args.model)
    print(text, end="")
    return 0 if verified else 1


def run_review(args) -> int:
    from newstag.config import load_config
    from newstag.review import review, write_issues

    if args.top < 1:
        raise NewstagError(f"--top is {args.top}; give 1 or more")
    config = load_config(args.experiment)
    issues, method = review(config, args.task, args.top)
    for row in issues:
        print(json.dumps(row, ensure_ascii=False))
    path = write_issues(config, args.task, issues)
    log.info("%d article(s) whose %s label looks wrong (%s); written %s", len(issues), args.task,
             method, path)
    if not args.no_tracking:
        from newstag.tracking import log_review

        log_review(config)
    return 0


def run_schema(args) -> int:

    from newstag.config import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


COMMANDS = {"preprocess": run_preprocess, "train": run_train, "evaluate": run_evaluate,
            "predict": run_predict, "explain": run_explain, "bench": run_bench, "search": run_search,
            "download": run_download, "schema": run_schema, "info": run_info, "review": run_review,
            "promote": run_promote, "ui": run_ui}
