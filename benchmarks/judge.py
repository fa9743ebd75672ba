#!/usr/bin/env python3
"""Judge throughput against a local OpenAI-protocol server with a fixed latency, in interleaved rounds.

Each request to the test server (:class:`traitvec.judge.testing.JudgeServer`) waits ``--latency``
seconds before it is answered, as a remote API would. With ``c`` requests in flight the ideal
rate is ``c / latency`` scores per second; the table shows the measured rate of
:class:`traitvec.OpenAIJudge` and its ratio to that ideal at each concurrency level.

The server stands in for a remote API, whose CPU is not ours, so by default it runs in a child
process; ``--in-process`` serves it from a thread of this process instead (it then shares the
GIL with the client, and the ratios drop). A row "in-process c32" always measures concurrency 32
against an in-process server too, for comparison. Then the same batch is scored twice with a
fresh SQLite cache: the second run must make no request.

Each round runs every level, the in-process row and the cache check, one after another, and the
rounds repeat, so that load drifting on a shared machine hits every variant of a round alike.
Each ratio is computed per round and printed as the median over rounds with its min–max; the
machine's load is printed at start and end.

Usage:
    python benchmarks/judge.py [--latency 0.1] [--levels 1,8,32,64] [--per-slot 32] [--rounds 5] [--in-process]

The last line is ``ratios: c32_vs_ideal=X second_run_requests=N`` (X the median over rounds, N the
most requests any second run made; acceptance: X ≥ 0.80, N = 0).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _rounds import interleave, machine_load, ratios_line, spread  # noqa: E402

from traitvec import OpenAIJudge, summarize  # noqa: E402
from traitvec.judge.testing import JudgeServer  # noqa: E402


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


def _judge(server: JudgeServer | _Remote, c: int, cache: Path | bool) -> OpenAIJudge:
    cache_path = False if cache is False else cache
    return OpenAIJudge(
        "bench-judge", base_url=server.base_url, api_key="sk-bench", concurrency=c, cache_path=cache_path
    )


def _score(server: JudgeServer | _Remote, c: int, n: int, tag: str) -> None:
    """Score n answers at concurrency c (no cache) and check every one came back, from its own request."""
    judge = _judge(server, c, False)
    questions, answers = _batch(n, tag)
    before = server.request_count
    summary = summarize(judge.score_coherence(questions, answers))
    if summary.n_ok != n or server.request_count - before != n:
        raise SystemExit(f"benchmark run went wrong: {summary} with {server.request_count - before} requests")


class _CacheCheck:
    """Per round: score a batch with a fresh cache, then the same batch again; record the second run."""

    def __init__(self, server: JudgeServer | _Remote, n: int) -> None:
        self.server, self.n = server, n
        self.first_walls: list[float] = []
        self.second_walls: list[float] = []
        self.second_requests: list[int] = []
        self.second_hits: list[int] = []

    def __call__(self) -> None:
        questions, answers = _batch(self.n, "cache")
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "judge-cache.sqlite"
            first = _judge(self.server, 32, cache)
            start = time.perf_counter()
            first.score_coherence(questions, answers)
            self.first_walls.append(time.perf_counter() - start)
            first.close()
            second = _judge(self.server, 32, cache)
            before = self.server.request_count
            start = time.perf_counter()
            again = second.score_coherence(questions, answers)
            self.second_walls.append(time.perf_counter() - start)
            self.second_requests.append(self.server.request_count - before)
            self.second_hits.append(sum(s.cached for s in again))
            second.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.1, help="server latency per request, seconds")
    parser.add_argument("--levels", default="1,8,32,64", help="concurrency levels, comma-separated")
    parser.add_argument("--per-slot", type=int, default=32, help="scores per concurrency slot at each level")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--in-process", action="store_true", help="serve from a thread of this process")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(machine_load("start"))
    levels = [int(x) for x in args.levels.split(",")]
    sizes = {c: max(c * args.per_slot, 16) for c in levels}
    import openai  # noqa: F401  - import before timing (the judge imports it on first use)

    server: JudgeServer | _Remote = (
        JudgeServer(latency=args.latency).start() if args.in_process else _Remote(args.latency)
    )
    local = JudgeServer(latency=args.latency).start()
    cache = _CacheCheck(server, 32 * args.per_slot)
    variants: dict[str, Callable[[], object]] = {
        f"c{c}": (lambda c=c: _score(server, c, sizes[c], f"c{c}")) for c in levels
    }
    variants["in-process c32"] = lambda: _score(local, 32, 32 * args.per_slot, "inproc")
    variants["cache"] = cache
    try:
        _score(server, 8, 16, "warm")
        times = interleave(variants, args.rounds)
    finally:
        server.stop()
        local.stop()

    where = "a thread of this process" if args.in_process else "a child process"
    print(f"judge throughput: server latency {args.latency * 1000:.0f} ms, served from {where}; "
          f"ideal = concurrency / latency; {args.rounds} rounds, median (min–max) over rounds")  # fmt: skip
    print(f"{'concurrency':>14} {'scores':>7} {'wall s':>19} {'scores/s':>22} {'ideal/s':>8}  ratio")
    ratios = {}
    rows = [(f"c{c}", str(c), c, sizes[c]) for c in levels] + [
        ("in-process c32", "in-process 32", 32, 32 * args.per_slot)
    ]
    for name, label, c, n in rows:
        ideal = c / args.latency
        rates = [n / t for t in times[name]]
        ratios[name] = spread([r / ideal for r in rates])
        print(f"{label:>14} {n:>7} {spread(times[name]).show(2):>19} {spread(rates).show(1):>22} {ideal:>8.1f}  "
              f"{ratios[name].show(2)}")  # fmt: skip
    print(
        f"cache: first run {cache.n} scores in {spread(cache.first_walls).show(2)} s; identical second run "
        f"{spread(cache.second_walls).show(3)} s, requests per round {cache.second_requests}, cache hits per round "
        f"{cache.second_hits}"
    )
    print(machine_load("end"))
    c32 = ratios["c32"].median if "c32" in ratios else float("nan")
    values = {"c32_vs_ideal": c32, "second_run_requests": float(max(cache.second_requests))}
    print(ratios_line(values, digits={"c32_vs_ideal": 2, "second_run_requests": 0}))


if __name__ == "__main__":
    main()
