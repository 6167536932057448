"""Director training as one task of two Ray CPU workers (gloo) on the tiny model: the two workers of batch 1 write
the director one process of batch 2 writes, and a Cancel leaves a checkpoint from which the next run ends exactly
where an uninterrupted one does; `dimx train-director --workers 2` writes that same file. One Ray start for the
module (the command line's pool is the fixture's: pool_for keeps one per spec)."""
import pytest
import torch
from safetensors.torch import load_file

from dimx_core.cli import main
from dimx_core.distributed.executor import WorkersSpec, close_pools, pool_for
from dimx_core.hooks import Hooks, Interrupted
from dimx_core.training.checkpoint import CheckpointStore
from dimx_core.training.job import TrainingJob, run_training
from dimx_core.training.options import TrainOptions
from dimx_core.video.components import load_diffusers_folder
from dimx_core.video.runtime import Runtime
from tests.synthetic_videos import blur_dataset

ray = pytest.importorskip("ray")
RUN = Runtime(place=lambda module: torch.device("cpu"), preview_every=0)
# 16 steps: a Cancel asked for after the first checkpoint reaches the workers a few steps later, before the end
OPTIONS = TrainOptions(rank=4, alpha=4.0, learning_rate=1e-2, steps=16, eval_every=0, validation=False,
                       checkpoint_every=1)
FLAGS = ["--kind", "s", "--rank", "4", "--alpha", "4", "--lr", "1e-2", "--steps", "16", "--eval-every", "0",
         "--no-validation", "--checkpoint-every", "1", "--device", "cpu"]  # OPTIONS on the command line


@pytest.fixture(scope="module")
def parts(tiny_model_dir):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers: the single-process reference sums in the same order per clip
    yield load_diffusers_folder(tiny_model_dir, dtype=torch.float32)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pool(parts):
    yield pool_for(WorkersSpec(count=2, cpu=True))  # the spec `--workers 2` makes on a machine without a GPU
    close_pools()
    ray.shutdown()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return blur_dataset(tmp_path_factory.mktemp("data") / "blur")


@pytest.fixture(scope="module")
def on_workers(parts, pool, dataset, tmp_path_factory):
    """An uninterrupted run on the two workers, with the progress the driver saw."""
    folder = tmp_path_factory.mktemp("workers")
    progress = []
    job = TrainingJob(dataset, OPTIONS, folder / "director.safetensors", folder / "checkpoints")
    result = run_training(parts, job, RUN.with_hooks(Hooks(progress=lambda s, t, p: progress.append((s, t)))),
                          workers=pool)
    return result, folder, progress


def test_two_workers_of_batch_one_train_what_one_process_of_batch_two_trains(parts, dataset, on_workers, tmp_path):
    """Equal up to rounding, not bit for bit: the gradient of batch 2's mean loss is the mean of the two clips'
    gradients (what the workers' all-reduce averages), but one process sums the two clips in other float orders."""
    result, folder, progress = on_workers
    assert result.path == folder / "director.safetensors" and result.steps_done == OPTIONS.steps
    assert sorted(path.name for path in folder.iterdir()) == ["checkpoints", "director.safetensors"]
    assert progress[-1] == (16, 16) and all(b[0] >= a[0] for a, b in zip(progress, progress[1:]))
    alone = run_training(parts, TrainingJob(dataset, OPTIONS.replace(batch_size=2), tmp_path / "one.safetensors"),
                         RUN)
    spread, single = load_file(result.path), load_file(alone.path)
    assert spread.keys() == single.keys()
    assert any(single[key].abs().max() > 0 for key in single if "lora_B" in key)  # it did train
    for key in single:
        assert torch.allclose(spread[key], single[key], rtol=1e-4, atol=1e-6), key


def test_cancel_on_workers_keeps_a_checkpoint_and_the_next_run_ends_as_an_uninterrupted_one(parts, pool, dataset,
                                                                                             on_workers, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    job = TrainingJob(dataset, OPTIONS, tmp_path / "director.safetensors", checkpoints)
    saved = CheckpointStore(checkpoints)
    with pytest.raises(Interrupted):
        run_training(parts, job, RUN.with_hooks(Hooks(should_stop=lambda: saved.path.is_file())), workers=pool)
    step = saved.step_saved()
    assert 1 <= step < OPTIONS.steps
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoints"]  # no director, nothing partial
    assert [path.name for path in checkpoints.iterdir()] == ["checkpoint.pt"]
    resumed = run_training(parts, job, RUN, workers=pool)
    whole, _, _ = on_workers
    assert resumed.resumed_from == step and resumed.steps_done == OPTIONS.steps
    assert resumed.losses == whole.losses
    finished, uninterrupted = load_file(resumed.path), load_file(whole.path)
    assert all(torch.equal(finished[key], uninterrupted[key]) for key in uninterrupted)


def test_train_director_with_two_workers_writes_the_file_of_the_pools_run(tiny_model_dir, pool, dataset, on_workers,
                                                                           tmp_path):
    out = tmp_path / "cli.safetensors"
    assert main(["train-director", "--model", str(tiny_model_dir), "--dataset", str(dataset), "--out", str(out),
                 *FLAGS, "--workers", "2"]) == 0
    written, expected = load_file(out), load_file(on_workers[0].path)
    assert all(torch.equal(written[key], expected[key]) for key in expected)
    assert (tmp_path / "cli.loss.png").is_file() and (tmp_path / "cli.checkpoints" / "checkpoint.pt").is_file()


def test_train_director_refuses_a_ray_address_without_a_worker_count(tiny_model_dir, dataset, tmp_path, capsys):
    assert main(["train-director", "--model", str(tiny_model_dir), "--dataset", str(dataset),
                 "--out", str(tmp_path / "x.safetensors"), *FLAGS, "--ray-address", "auto"]) == 2
    assert "--ray-address needs --workers N" in capsys.readouterr().err
