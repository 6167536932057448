"""The Workers node: its widgets become the WorkersSpec the 4D nodes hand their videos to."""
import dataclasses

import pytest

from dimx_core.distributed.executor import WorkerSettings, WorkersSpec
from dimx_core.distributed.parallel import ParallelPlan


def test_the_workers_node_makes_the_spec_its_widgets_say(node_classes):
    spec, info = node_classes["DimensionXWorkers"].execute("cpu:4", "", True, 2, 0.0, True).result
    expected = WorkersSpec(count=4, cpu=True, plan=ParallelPlan(cfg=2, ulysses=2),
                           settings=WorkerSettings(low_memory=True))
    assert dataclasses.asdict(spec) == dataclasses.asdict(expected)  # the pack's copy of the library, by value
    assert info == "4 CPU workers, 4 ranks per video (CFG 2 x Ulysses 2)"


def test_the_workers_node_refuses_what_it_cannot_run(node_classes):
    with pytest.raises(ValueError, match="do not form gangs"):
        node_classes["DimensionXWorkers"].execute("cpu:3", "", True, 1, 0.0, False)
    with pytest.raises(ValueError, match="GPU ids such as"):
        node_classes["DimensionXWorkers"].execute("first two", "", False, 1, 0.0, False)


def test_the_4d_nodes_and_the_trainer_take_workers_as_an_optional_input(node_classes):
    for node_id in ("DimensionXMultiViewGenerate", "DimensionXAppearanceRefine", "DimensionXTrainDirectorLoRA"):
        (workers,) = [item for item in node_classes[node_id].GET_SCHEMA().inputs if item.id == "workers"]
        assert workers.optional and workers.io_type == "DIMX_WORKERS"
