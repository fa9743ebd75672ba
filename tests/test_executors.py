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
        try:
            start = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False, configure_logging=False)
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


def test_ray_refuses_a_task_no_node_can_hold(ray_instance: Any) -> None:
    with pytest.raises(ConfigError, match=r"task 'big' asks for 1 CPU and 1 GPU .* has 2 CPU and 0 GPU") as caught:
        RayExecutor(num_gpus_per_task=1).run([Task("big", assigned)])
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
