"""Executors: the local one, and Ray on a local instance started (once) by this module.

The Ray instance is real (2 CPUs, no dashboard, token auth with its token in the environment, so
nothing is written to ~/.ray); tasks run in Ray's worker processes and write real files.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import outputs, tiny_experiments_root

from traitvec._io import write_json
from traitvec.errors import ConfigError
from traitvec.executors import (
    ExecutorError,
    LocalExecutor,
    RayExecutor,
    Resources,
    Task,
    make_executor,
    resources_for,
    values,
)
from traitvec.experiments import ExperimentConfig

TRAITS = ("hum/optimism", "alignment/deception")
KEY = "sk-test-SECRET-executor-7731"


def run_trait(out: str, trait: str, n: int, delay: float = 0.0) -> dict[str, Any]:
    """A stand-in for one pipeline task: deterministic numbers from the trait, written atomically."""
    time.sleep(delay)
    digest = hashlib.sha256(trait.encode()).digest()
    scores = [round(b / 255 * 100, 3) for b in digest[:n]]
    folder = Path(out) / trait
    write_json(folder / "results.json", {"trait": trait, "scores": scores, "best": max(scores)})
    write_json(folder / "vectors.json", {"layers": list(range(n)), "norms": [s / 7 for s in scores]})
    return {"trait": trait, "best": max(scores)}


def with_pid(out: str, trait: str, n: int) -> tuple[dict[str, Any], int]:
    return run_trait(out, trait, n), os.getpid()


def fail_config(trait: str) -> None:
    raise ConfigError(f"datasets/traits/{trait}: positive.txt has 3 lines but negative.txt has 2")


def assigned() -> dict[str, float]:
    import ray

    return dict(ray.get_runtime_context().get_assigned_resources())


def die() -> None:
    os._exit(3)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def trait_tasks(out: Path, fn: Any = run_trait) -> list[Task[Any]]:
    return [Task(name, fn, (str(out), name, 6)) for name in TRAITS]


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[Any]:
    """One local Ray instance for the module; shut down (and its temp dir removed) at the end."""
    import ray
    from ray import cloudpickle

    assert not ray.is_initialized()
    # Ray puts unix sockets under its temp dir; keep the path short (sockets are limited to ~107 bytes).
    temp = tempfile.mkdtemp(prefix="tvray", dir="/tmp" if os.path.isdir("/tmp") else None)
    module = sys.modules[__name__]
    with pytest.MonkeyPatch.context() as env:
        # Ray turns token auth on for a new local instance (setting RAY_AUTH_MODE itself, restored
        # here at the end) and reads the token from RAY_AUTH_TOKEN instead of writing ~/.ray/auth_token.
        env.delenv("RAY_AUTH_MODE", raising=False)
        env.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
        env.setenv("OPENAI_API_KEY", KEY)  # the workers' environment: tasks read the judge's key from it
        try:
            start = time.perf_counter()
            # one logical GPU (nothing runs on it): Ray's GPU accounting, on a machine without one
            ray.init(
                num_cpus=2,
                num_gpus=1,
                include_dashboard=False,
                _temp_dir=temp,
                log_to_driver=False,
                configure_logging=False,
            )
            print(f"ray.init took {time.perf_counter() - start:.1f} s", file=sys.stderr)
            cloudpickle.register_pickle_by_value(module)  # workers cannot import tests/ by name
            yield ray
        finally:
            if module.__name__ in cloudpickle.list_registry_pickle_by_value():
                cloudpickle.unregister_pickle_by_value(module)
            ray.shutdown()
            shutil.rmtree(temp, ignore_errors=True)
    assert not ray.is_initialized()


# ------------------------------------------------------------------ Ray


def test_ray_outputs_identical_to_local(ray_instance: Any, tmp_path: Path) -> None:
    local = LocalExecutor().run(trait_tasks(tmp_path / "local"))
    with RayExecutor() as executor:
        remote = executor.run(trait_tasks(tmp_path / "ray", with_pid))
    assert [value for value, _ in remote] == local
    assert [v["trait"] for v in local] == list(TRAITS)  # results come back in task order
    assert all(pid != os.getpid() for _, pid in remote)  # they really ran in Ray's workers
    files = tree(tmp_path / "local")
    assert len(files) == 4
    assert tree(tmp_path / "ray") == files
    assert ray_instance.is_initialized()  # close() leaves a cluster it did not start


def test_ray_failure_names_the_task_and_keeps_the_others(ray_instance: Any, tmp_path: Path) -> None:
    out = tmp_path / "ray"
    tasks = [
        Task("broken/trait", fail_config, ("broken/trait",)),
        Task(TRAITS[0], run_trait, (str(out), TRAITS[0], 6, 0.5)),  # finishes well after the failure
    ]
    with pytest.raises(ExecutorError) as caught:
        RayExecutor().run(tasks)
    err = caught.value
    assert err.failed == ("broken/trait",)
    failure = err.failures[0]
    assert failure.index == 0
    assert failure.error_type == "traitvec.errors.ConfigError"
    assert "positive.txt has 3 lines" in failure.message
    assert isinstance(failure.error, ConfigError)  # the exception itself made the trip back
    assert "fail_config" in failure.traceback
    assert "task 'broken/trait' failed: traitvec.errors.ConfigError" in str(err)
    # raised only after the other task finished: its outputs are whole and its value is kept
    [expected] = LocalExecutor().run([Task(TRAITS[0], run_trait, (str(tmp_path / "local"), TRAITS[0], 6))])
    assert tree(out) == tree(tmp_path / "local")
    assert err.outcomes[1].ok and err.outcomes[1].value == expected


def test_ray_worker_death_is_reported_as_that_task(ray_instance: Any, tmp_path: Path) -> None:
    outcomes = RayExecutor().run_all([Task("dies", die), Task(TRAITS[1], run_trait, (str(tmp_path), TRAITS[1], 3))])
    assert [o.ok for o in outcomes] == [False, True]
    failure = outcomes[0].failure
    assert failure is not None and failure.name == "dies"
    assert failure.error_type.startswith("ray.exceptions.")
    assert (tmp_path / TRAITS[1] / "results.json").is_file()


def test_ray_task_gets_its_own_resources(ray_instance: Any) -> None:
    executor = RayExecutor(num_cpus_per_task=1)
    got = executor.run([Task("default", assigned), Task("two", assigned, resources=Resources(num_cpus=2))])
    assert got[0].get("CPU") == 1.0
    assert got[1].get("CPU") == 2.0


def test_ray_gives_each_task_a_gpu_when_the_cluster_has_one_and_none_is_set(ray_instance: Any) -> None:
    got = RayExecutor(num_gpus_per_task=None).run(
        [Task("auto", assigned), Task("none", assigned, resources=Resources(num_gpus=0))]
    )
    assert got[0].get("GPU") == 1.0
    assert "GPU" not in got[1]
    assert RayExecutor().run([Task("default", assigned)])[0].get("GPU") is None  # the constructor's default: 0


def test_ray_refuses_a_task_no_node_can_hold(ray_instance: Any) -> None:
    with pytest.raises(ConfigError, match=r"task 'big' asks for 1 CPU and 2 GPU .* has 2 CPU and 1 GPU") as caught:
        RayExecutor(num_gpus_per_task=2).run([Task("big", assigned)])
    assert caught.value.setting == "RayExecutor(num_gpus_per_task=)"


# ------------------------------------------------------------------ local, no Ray


def test_local_runs_every_task_in_order_and_reports_failures(tmp_path: Path) -> None:
    tasks = [
        Task("a", run_trait, (str(tmp_path), "a/x", 2)),
        Task("bad", fail_config, ("bad",)),
        Task("c", run_trait, (str(tmp_path), "c/y", 2)),
    ]
    outcomes = LocalExecutor().run_all(tasks)
    assert [o.name for o in outcomes] == ["a", "bad", "c"]
    assert [o.ok for o in outcomes] == [True, False, True]
    assert (tmp_path / "c/y/results.json").is_file()  # the task after the failure still ran
    with pytest.raises(ExecutorError, match="1 of 3 tasks failed") as caught:
        values(outcomes)
    assert caught.value.failed == ("bad",)
    assert LocalExecutor().run([]) == []


def test_tasks_are_checked() -> None:
    with pytest.raises(ConfigError, match="two tasks are named 'a'"):
        LocalExecutor().run([Task("a", len, ("x",)), Task("a", len, ("y",))])
    with pytest.raises(ConfigError, match="non-empty name"):
        Task(" ", len)
    with pytest.raises(ConfigError, match="not callable"):
        Task("x", "len")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"Resources.num_gpus = -1"):
        Resources(num_gpus=-1)
    with pytest.raises(ConfigError, match=r"RayExecutor\(num_gpus_per_task=\) = 'one'"):
        RayExecutor(num_gpus_per_task="one")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"make_executor\(kind=\) = 'dask' is not one of local, ray"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="only applies to the ray executor"):
        make_executor("local", address="auto")
    assert isinstance(make_executor("ray", address="auto", num_gpus_per_task=1), RayExecutor)


def _config(device: str = "auto", device_map: str | None = None) -> ExperimentConfig:
    return ExperimentConfig(name="x", path=Path("experiments/x"), model="org/m", device=device, device_map=device_map)


def test_resources_for_reads_the_experiment_configs() -> None:
    assert resources_for(_config("cpu"), _config("cpu")).num_gpus == 0.0
    assert resources_for(_config("cuda"), _config("cpu")).num_gpus == 1.0
    assert resources_for(_config("cuda:0"), _config("auto")).num_gpus == 1.0
    assert resources_for(_config("auto")).num_gpus is None  # the executor's num_gpus_per_task decides
    assert resources_for(_config("cpu"), _config(device_map="auto")).num_gpus is None
    assert resources_for(_config(device_map="auto"), gpus=4, cpus=8) == Resources(num_cpus=8, num_gpus=4)


# ------------------------------------------------------------------ the pipeline as tasks (tiny model, judge server)

PIPELINE_TRAITS = ("states/optimism", "styles/formality")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An experiments root with one experiment on a tiny random-init Llama saved to a folder."""
    return tiny_experiments_root(tmp_path_factory.mktemp("experiments"))


@pytest.fixture
def judge_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from traitvec.judge.testing import JudgeServer, KeywordResponder

    with JudgeServer(KeywordResponder()) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        yield server


def pipeline_args(root: Path, *extra: str) -> list[str]:
    from conftest import ROOT

    return [
        "run",
        "--experiment",
        "tiny",
        "--traits",
        *PIPELINE_TRAITS,
        "--traits-root",
        str(ROOT / "datasets" / "traits"),
        "--experiments-root",
        str(root),
        "--judge-model",
        "test-judge",
        "--judge-cache",
        "off",
        "--methods",
        "mean-diff",
        "--position",
        "prefill-mean",
        "--n-layers",
        "1",
        "--questions",
        "3",
        "--search-steps",
        "2",
        "--max-new-tokens",
        "6",
        *extra,
    ]


def _diff(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _diff(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {str(a)[:80]} != {str(b)[:80]}"]


def clear_outputs(folder: Path) -> None:
    for sub in ("extraction", "steering"):
        shutil.rmtree(folder / sub, ignore_errors=True)


def test_ray_pipeline_tasks_write_what_the_sequential_run_writes(
    ray_instance: Any, tiny_root: Path, judge_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from traitvec.cli import main

    folder = tiny_root / "tiny"
    clear_outputs(folder)
    assert main(pipeline_args(tiny_root)) == 0  # the default: sequential, in this process
    sequential = outputs(folder)
    local_out = capsys.readouterr().out
    requests = len(judge_server.requests)
    for trait in PIPELINE_TRAITS:
        assert f"extraction/{trait}/vectors/mean-diff-prefill-mean.safetensors" in sequential
        assert f"extraction/{trait}/evaluation.json" in sequential
        assert sequential[f"steering/{trait}/results.json"]["trait"] == trait
    clear_outputs(folder)
    assert main(pipeline_args(tiny_root, "--executor", "ray")) == 0
    assert len(judge_server.requests) - requests >= requests  # the tasks asked the judge this test serves
    tasked = outputs(folder)
    assert sorted(tasked) == sorted(sequential)
    differing = {name: _diff(tasked[name], sequential[name]) for name in sequential if tasked[name] != sequential[name]}
    assert differing == {}
    out = capsys.readouterr().out
    assert out.split("Steering")[1] == local_out.split("Steering")[1]  # the same tables


def test_ray_task_failure_names_the_trait_and_keeps_the_other(
    ray_instance: Any, tiny_root: Path, judge_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from traitvec.cli import main

    folder = tiny_root / "tiny"
    clear_outputs(folder)
    (folder / "extraction").mkdir()
    (folder / "extraction" / "styles").write_text("a file where styles/formality's folder must go\n")
    status = main(pipeline_args(tiny_root, "--executor", "ray"))
    err = capsys.readouterr().err
    assert status == 1  # not a traitvec error: the run's own exit status for a crash
    [line] = [line for line in err.splitlines() if line.startswith("traitvec: error:")]
    assert line.startswith("traitvec: error: 1 of 2 traits failed: styles/formality: ")
    assert "states/optimism" not in line
    kept = outputs(folder / "steering" / "states" / "optimism")
    assert kept["results.json"]["trait"] == "states/optimism"
    assert (folder / "extraction/states/optimism/vectors/mean-diff-prefill-mean.safetensors").is_file()
    assert not (folder / "steering" / "styles").exists()
    before = {p: p.read_bytes() for p in (folder / "steering" / "states").rglob("*") if p.is_file()}
    (folder / "extraction" / "styles").unlink()
    assert main(pipeline_args(tiny_root, "--executor", "ray")) == 0  # the rerun does the failed trait only
    assert {p: p.read_bytes() for p in (folder / "steering" / "states").rglob("*") if p.is_file()} == before
    assert (folder / "steering/styles/formality/results.json").is_file()


def test_pipeline_tasks_carry_no_api_key_and_pin_the_checked_judge(monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import ROOT
    from ray import cloudpickle

    from traitvec.judge import JudgeSettings
    from traitvec.stages.parallel import pipeline_tasks
    from traitvec.traits import load_trait

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("TRAITVEC_JUDGE_MODEL", "judge-from-env")
    traits = [load_trait(name, ROOT / "datasets" / "traits") for name in PIPELINE_TRAITS]
    tasks = pipeline_tasks(_config("cpu"), traits, judge=JudgeSettings(concurrency=4))
    assert [t.name for t in tasks] == list(PIPELINE_TRAITS)
    assert tasks[0].resources.num_gpus == 0.0  # a cpu experiment needs no GPU
    pinned = tasks[0].kwargs["judge"]
    assert pinned == JudgeSettings(model="judge-from-env", base_url="http://127.0.0.1:8000/v1", concurrency=4)
    assert tasks[0].kwargs["needs_key"] is True
    assert KEY.encode() not in cloudpickle.dumps(tasks)  # the key stays in the environment
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    local = pipeline_tasks(_config("cpu"), traits[:1])[0].kwargs
    assert (
        local["judge"] == JudgeSettings(local=True) and local["needs_key"] is False
    )  # the smoke-test judge, chosen here
    assert pipeline_tasks(_config("cpu"), traits[:1], steering=None)[0].kwargs["judge"] is None  # nothing to judge


def test_a_task_on_a_worker_without_the_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import ROOT

    from traitvec.errors import JudgeError
    from traitvec.judge import JudgeSettings
    from traitvec.stages.parallel import run_trait_task
    from traitvec.traits import load_trait

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    trait = load_trait(PIPELINE_TRAITS[0], ROOT / "datasets" / "traits")
    common: dict[str, Any] = {
        "steer_config": None, "extraction": None, "steering": None, "vetting": None, "vetted_only": False,
        "force": False, "cwd": os.getcwd(),
    }  # fmt: skip
    settings = JudgeSettings(base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(JudgeError, match=r"needs OPENAI_API_KEY, which is set where the run started but not on this"):
        run_trait_task(_config("cpu"), trait, judge=settings, needs_key=True, **common)
    with pytest.raises(ConfigError, match=r"working folder /no/such/folder does not exist on this worker"):
        run_trait_task(_config("cpu"), trait, judge=None, needs_key=False, **{**common, "cwd": "/no/such/folder"})


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ray-address", "auto"], "--ray-address applies to --executor ray only"),
        (["--gpus-per-task", "1"], "--gpus-per-task applies to --executor ray only"),
        (["--executor", "ray", "--gpus-per-task", "-1"], "--gpus-per-task -1.0; use a number >= 0"),
    ],
)
def test_executor_flags_are_checked_before_anything_runs(
    tiny_root: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from traitvec.cli import main

    assert main(pipeline_args(tiny_root, "--no-steering", *extra)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("traitvec: error: ") and message in err, err
