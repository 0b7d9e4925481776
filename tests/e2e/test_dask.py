"""`newstag search --backend dask`: a real dask.distributed LocalCluster (a scheduler and two
worker processes on 127.0.0.1) fits the folds, and the results equal the local run's."""

import socket
import sys

import pytest
import yaml

from newstag.config import load_config
from newstag.errors import NewstagError
from newstag.search import search_experiment

from ..conftest import run_newstag, sample_experiment

distributed = pytest.importorskip("distributed")

SEARCH = {"space": {"classifier": ["linear_svm", "complement_nb"],
                    "clf__C": {"low": 0.1, "high": 10, "log": True},
                    "vect__ngram_range": [[1, 1], [1, 2]]},
          "n_iter": 6, "folds": 3}


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as local:
        yield local


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    work = tmp_path_factory.mktemp("dask-search")
    path = sample_experiment(work)
    config = yaml.safe_load(path.read_text())
    config["tasks"]["topic"]["search"] = SEARCH
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    run_newstag("preprocess", str(path), cwd=work)
    return work, path


def outcome(results) -> dict:
    return {task: {"best": result.best.settings(),
                   "candidates": [(c.number, c.state, c.settings(), c.scores)
                                  for c in sorted(result.candidates, key=lambda c: c.number)]}
            for task, result in results.items()}


def test_a_search_on_the_cluster_equals_the_local_run(project, cluster, monkeypatch):
    work, path = project
    monkeypatch.chdir(work)
    config = load_config(path)
    local, _ = search_experiment(config, jobs=1, tracking=False)
    with distributed.Client(cluster) as client:
        remote, best_file = search_experiment(config, jobs=1, tracking=False, client=client)
    assert outcome(remote) == outcome(local)
    assert any(c.state == "complete" for c in remote["topic"].candidates)
    assert best_file.exists()


def test_the_cli_sends_the_folds_to_the_scheduler(project, cluster):
    work, path = project
    result = run_newstag("search", str(path), "--no-tracking", "--backend", "dask",
                         cwd=work, env={"DASK_SCHEDULER_ADDRESS": cluster.scheduler_address})
    assert "2 workers" in result.stderr and "topic: best" in result.stdout


def test_a_scheduler_that_does_not_answer_fails_before_any_work(project):
    work, path = project
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    from newstag.cluster import connect

    with pytest.raises(NewstagError, match=rf"Dask scheduler tcp://127.0.0.1:{port} does not answer.*"
                                           r"dask scheduler"):
        connect(f"tcp://127.0.0.1:{port}", timeout=2)


def test_without_an_address_or_without_dask_the_error_says_what_to_do(project, monkeypatch):
    work, path = project
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    result = run_newstag("search", str(path), "--no-tracking", "--backend", "dask", cwd=work,
                         check=False)
    assert result.returncode == 1 and "--scheduler tcp://HOST:PORT" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if Dask were not installed
    from newstag.cluster import connect

    with pytest.raises(NewstagError, match=r"needs Dask, which is not installed: "
                                           r"pip install 'newstag\[dask\]'"):
        connect("tcp://127.0.0.1:8786")


def sole_copies(dask_scheduler) -> dict:
    """Run the scheduler's active memory manager once, as it does every 2 s (it drops the replicas
    of data no task is waiting for, scattered data included, down to one), then map each worker to
    the scattered keys (the training rows) of which it holds the only copy."""
    dask_scheduler.extensions["amm"].run_once()
    sole: dict = {}
    for ts in dask_scheduler.tasks.values():
        if ts.run_spec is None and len(ts.who_has or ()) == 1:
            (holder,) = ts.who_has
            sole.setdefault(holder.address, []).append(ts.key)
    return sole


class KillAWorker:
    """A candidate log that, as the second candidate starts, kills the process of a worker that holds
    the only copy of some of the training rows, so the cluster loses them and not only a worker."""

    def __init__(self, cluster, client):
        self.cluster, self.client = cluster, client
        self.killed, self.lost = None, []

    def started(self, candidate):
        import os
        import signal

        if candidate.number == 1 and self.killed is None:
            sole = self.client.run_on_scheduler(sole_copies)
            if not sole:
                return  # nothing to lose: the test fails on `killer.lost`
            address = min(sole)
            self.lost = sole[address]
            nanny = next(n for n in self.cluster.workers.values() if n.worker_address == address)
            self.killed = nanny.process.process.pid
            os.kill(self.killed, signal.SIGKILL)

    def finished(self, handle, candidate, scoring):
        return None


def test_a_worker_lost_mid_search_loses_no_candidate(project, cluster, monkeypatch):
    from newstag.search import run_search, _training_rows  # noqa: I001
    from newstag.data.splits import load_task_splits

    work, path = project
    monkeypatch.chdir(work)
    config = load_config(path)
    task = {t.name: t for t in config.tasks}["topic"]
    texts, labels = _training_rows(load_task_splits, config, task)
    local = run_search(task, task.search, texts, labels, config.seed, progress=False)
    with distributed.Client(cluster) as client:
        killer = KillAWorker(cluster, client)
        remote = run_search(task, task.search, texts, labels, config.seed, candidate_log=killer,
                            progress=False, client=client)
    assert killer.killed is not None and killer.lost  # a worker died with the only copy of some rows
    assert outcome({"topic": remote}) == outcome({"topic": local})
