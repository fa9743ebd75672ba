"""Judge throughput against a local OpenAI-protocol server with a fixed latency.

Each request to the test server (:class:`traitvec.testing.JudgeServer`) waits ``--latency``
seconds before it is answered, as a remote API would. With ``c`` requests in flight the ideal
rate is ``c / latency`` scores per second; the table shows the measured rate of
:class:`traitvec.judge_openai.OpenAIJudge` and its ratio to that ideal at each concurrency level.

The server stands in for a remote API, whose CPU is not ours, so by default it runs in a child
process; ``--in-process`` serves it from a thread of this process instead (it then shares the
GIL with the client, and the ratios drop). A last row always measures concurrency 32 against an
in-process server too, for comparison.

Then the same batch is scored twice with the SQLite cache on: the second run must make no request.

Usage:
    python benchmarks/judge.py [--latency 0.1] [--levels 1,8,32,64] [--per-slot 32] [--in-process]

The last line is ``ratios: c32_vs_ideal=X second_run_requests=N`` (acceptance: X ≥ 0.80, N = 0).
Timings on shared machines vary run to run; compare ratios measured in one run.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from traitvec.judge_openai import OpenAIJudge
from traitvec.testing import JudgeServer

from traitvec.judge import summarize


def _serve(latency: float, conn: Connection) -> None:
    """Child process: run a JudgeServer and answer ``count`` / ``stop`` on the pipe."""
    with JudgeServer(latency=latency) as server:
        conn.send(server.base_url)
        while True:
            command = conn.recv()
            if command == "count":
                conn.send(server.request_count)
            else:
                break


class _Remote:
    """A JudgeServer in a child process, with the two things the benchmark asks of it."""

    def __init__(self, latency: float) -> None:
        self._conn, child = mp.Pipe()
        self._process = mp.get_context("spawn").Process(target=_serve, args=(latency, child), daemon=True)
        self._process.start()
        self.base_url: str = self._conn.recv()

    @property
    def request_count(self) -> int:
        self._conn.send("count")
        return int(self._conn.recv())

    def stop(self) -> None:
        self._conn.send("stop")
        self._process.join(timeout=10)


def _batch(n: int, tag: str) -> tuple[list[str], list[str]]:
    questions = [f"Question {tag}-{i}: what will happen to the city budget next year?" for i in range(n)]
    answers = [f"Answer {tag}-{i}: the budget will probably grow a little, with hopeful signs." for i in range(n)]
    return questions, answers


def _measure(server: JudgeServer | _Remote, c: int, n: int, latency: float, tag: str) -> tuple[float, float, float]:
    """(wall seconds, scores per second, ratio to ideal) for n scores at concurrency c."""
    judge = OpenAIJudge("bench-judge", base_url=server.base_url, api_key="sk-bench", concurrency=c, cache_path=False)
    questions, answers = _batch(n, tag)
    before = server.request_count
    start = time.perf_counter()
    scores = judge.score_coherence(questions, answers)
    wall = time.perf_counter() - start
    summary = summarize(scores)
    if summary.n_ok != n or server.request_count - before != n:
        raise SystemExit(f"benchmark run went wrong: {summary} with {server.request_count - before} requests")
    rate = n / wall
    return wall, rate, rate / (c / latency)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.1, help="server latency per request, seconds")
    parser.add_argument("--levels", default="1,8,32,64", help="concurrency levels, comma-separated")
    parser.add_argument("--per-slot", type=int, default=32, help="scores per concurrency slot at each level")
    parser.add_argument("--in-process", action="store_true", help="serve from a thread of this process")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    levels = [int(x) for x in args.levels.split(",")]
    import openai  # noqa: F401  - import before timing (the judge imports it on first use)

    server: JudgeServer | _Remote = (
        JudgeServer(latency=args.latency).start() if args.in_process else _Remote(args.latency)
    )
    rows = []
    try:
        for c in levels:
            n = max(c * args.per_slot, 16)
            rows.append((c, n, *_measure(server, c, n, args.latency, f"c{c}")))
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "judge-cache.sqlite"
            n_cache = 32 * args.per_slot
            questions, answers = _batch(n_cache, "cache")
            first = OpenAIJudge("bench-judge", base_url=server.base_url, api_key="sk-bench", concurrency=32,
                                cache_path=cache)  # fmt: skip
            start = time.perf_counter()
            first.score_coherence(questions, answers)
            first_wall = time.perf_counter() - start
            first.close()
            second = OpenAIJudge("bench-judge", base_url=server.base_url, api_key="sk-bench", concurrency=32,
                                 cache_path=cache)  # fmt: skip
            before = server.request_count
            start = time.perf_counter()
            again = second.score_coherence(questions, answers)
            second_wall = time.perf_counter() - start
            second_requests = server.request_count - before
            second.close()
    finally:
        server.stop()
    with JudgeServer(latency=args.latency) as local:
        in_process = _measure(local, 32, 32 * args.per_slot, args.latency, "inproc")

    where = "a thread of this process" if args.in_process else "a child process"
    print(f"judge throughput: server latency {args.latency * 1000:.0f} ms, served from {where}; "
          "ideal = concurrency / latency")  # fmt: skip
    print(f"{'concurrency':>11} {'scores':>7} {'wall s':>8} {'scores/s':>9} {'ideal/s':>8} {'ratio':>6}")
    for c, n, wall, rate, ratio in rows:
        print(f"{c:>11} {n:>7} {wall:>8.2f} {rate:>9.1f} {c / args.latency:>8.1f} {ratio:>6.2f}")
    wall, rate, ratio = in_process
    print(f"same at concurrency 32 with the server in this process (shares the GIL): {rate:.1f} scores/s, "
          f"ratio {ratio:.2f}")  # fmt: skip
    print(
        f"cache: first run {n_cache} scores in {first_wall:.2f} s; identical second run {second_wall:.3f} s, "
        f"{second_requests} requests, {sum(s.cached for s in again)} cache hits"
    )
    c32 = next((ratio for c, *_, ratio in rows if c == 32), float("nan"))
    print(f"ratios: c32_vs_ideal={c32:.2f} second_run_requests={second_requests}")


if __name__ == "__main__":
    main()
