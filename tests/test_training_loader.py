"""The training data workers: they render groups after the parent has rendered some (the val groups).

Regression: with PyAV 18 the DataLoader's forked worker inherited a swscale context whose slice threads did
not exist in the child and hung for ever in its first compressed clip (aesrm-train sat idle at 0 % CPU).
"""

from __future__ import annotations

import torch

from service.training import data
from service.training.train import group_loader
from tests.conftest import asset_source


def test_workers_render_the_same_batches_as_the_parent_after_it_has_rendered():
    torch.set_num_threads(1)
    src = [asset_source("chelsea")]
    data.fixed_groups(src, 1, seed=0)  # the parent renders first (PyAV encode, decode, reformat), as main() does
    ds = data.GroupDataset(src, 6, seed=1)
    in_workers = list(group_loader(ds, 2, workers=1, timeout_s=120))  # the hang raised after 120 s
    in_process = list(group_loader(ds, 2, workers=0))
    assert len(in_workers) == len(in_process) == 3
    for (clips_w, crit_w), (clips_p, crit_p) in zip(in_workers, in_process):
        assert torch.equal(crit_w, crit_p) and torch.equal(clips_w, clips_p)  # the same groups, bit for bit
