"""What `make ui`'s lean MLflow server costs against MLflow's defaults: processes, memory, first answer.

Starts `newstag ui EXP` (one worker, no job-execution runner) and then `mlflow server` with its
defaults over the same store, one after the other, each on a free port. For each: the seconds
until the UI's page answers, then, a few seconds later, the number of processes in the server's
tree and their summed proportional set size (PSS: shared pages split between the processes that
share them). Each server is stopped before the next starts. The times move with the machine's load.

    .venv/bin/python scripts/ui_footprint.py [experiments/default.yaml] [--port 5090]
"""

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

from newstag.tracking import tracking_uri


def measure(command: list[str], port: int, env: dict, settle: float) -> tuple[float, int, float]:
    start = time.perf_counter()
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"{command[0]} exited with {server.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as answer:
                    answer.read()
                break
            except OSError:
                time.sleep(0.2)
        seconds = time.perf_counter() - start
        time.sleep(settle)  # workers and runners started after the first answer
        tree = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        pss = 0
        for process in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                pss += process.memory_full_info().pss
        return seconds, len(tree), pss / 2**20
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", nargs="?", default="experiments/default.yaml")
    parser.add_argument("--port", type=int, default=5090, help="the first server's port; the second's is +1")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait before counting")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    runs = {
        "newstag ui (make ui)": [str(bin_dir / "newstag"), "ui", args.experiment, "--host", "127.0.0.1",
                                 "--port", str(args.port)],
        "mlflow server, defaults": [str(bin_dir / "mlflow"), "server", "--backend-store-uri", tracking_uri(),
                                    "--host", "127.0.0.1", "--port", str(args.port + 1)],
    }
    for (name, command), port in zip(runs.items(), (args.port, args.port + 1), strict=True):
        seconds, processes, pss = measure(command, port, env, args.settle)
        print(f"{name:26s} first answer {seconds:5.1f} s, {processes} processes, {pss:,.0f} MB (PSS)")


if __name__ == "__main__":
    main()
