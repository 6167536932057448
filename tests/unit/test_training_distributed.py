"""The trainer data-parallel: two processes of batch 1 (a gloo process group on the CPU) train what one process
of batch 2 trains, and only the first process writes the file."""
import torch
import torch.distributed as dist
import torch.multiprocessing as multiprocessing
from safetensors.torch import load_file

from dimx_core.datasets.layout import open_dataset
from dimx_core.training.options import TrainOptions
from dimx_core.training.trainer import train_director
from dimx_core.video.components import load_diffusers_folder
from dimx_core.video.runtime import Runtime

OPTIONS = TrainOptions(rank=4, alpha=4.0, learning_rate=1e-2, steps=2, eval_every=0, validation=False,
                       checkpoint_every=0, image_dropout=0.0)


def _cpu(module):
    return torch.device("cpu")


def _process(rank: int, world: int, rendezvous: str, model: str, dataset: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        train_director(load_diffusers_folder(model, dtype=torch.float32), open_dataset(dataset), OPTIONS, out,
                       Runtime(place=_cpu), process_group=dist.group.WORLD)
    finally:
        dist.destroy_process_group()


def test_two_processes_of_batch_one_train_what_one_process_of_batch_two_trains(tiny_model_dir, tmp_path):
    from tests.synthetic_videos import blur_dataset  # here: the spawned processes cannot import tests/

    blur_dataset(tmp_path / "data")
    out = tmp_path / "parallel.safetensors"
    multiprocessing.spawn(_process, args=(2, str(tmp_path / "rendezvous"), str(tiny_model_dir), str(tmp_path / "data"),
                                          str(out)), nprocs=2)
    single = tmp_path / "single.safetensors"
    train_director(load_diffusers_folder(tiny_model_dir, dtype=torch.float32), open_dataset(tmp_path / "data"),
                   OPTIONS.replace(batch_size=2), single, Runtime(place=_cpu))
    parallel, alone = load_file(out), load_file(single)
    assert parallel.keys() == alone.keys()
    assert any(alone[key].abs().max() > 0 for key in alone if "lora_B" in key)   # it did train
    for key in alone:
        assert torch.allclose(parallel[key], alone[key], rtol=1e-4, atol=1e-6), key
