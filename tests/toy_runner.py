"""A tiny mmengine ``Runner`` setup (toy model, in-memory data, CPU).

Shared by the engine tests. Nothing here registers anything in mmengine's
global registries: the model and dataset are passed as instances.
"""
import uuid

import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

NUM_SAMPLES = 32
BATCH_SIZE = 4


class ToyModel(BaseModel):
    """``Linear(4, 2)`` with deterministic weights chosen by ``init_seed``.

    ``loss_calls`` counts the training forward passes this instance ran, so a
    test can tell how many iterations a (resumed) runner really trained.
    """

    def __init__(self, init_seed: int = 0):
        super().__init__()
        self.linear = nn.Linear(4, 2)
        g = torch.Generator().manual_seed(init_seed)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(2, 4, generator=g))
            self.linear.bias.copy_(torch.randn(2, generator=g))
        self.loss_calls = 0

    def forward(self, inputs, labels=None, mode='tensor'):
        x = torch.stack(inputs) if isinstance(inputs, list) else inputs
        out = self.linear(x)
        if mode == 'loss':
            self.loss_calls += 1
            y = torch.stack(labels) if isinstance(labels, list) else labels
            return dict(loss=((out - y)**2).mean())
        return out


class ToyData(Dataset):
    """32 fixed random (inputs, labels) pairs."""

    def __init__(self):
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(NUM_SAMPLES, 4, generator=g)
        self.y = torch.randn(NUM_SAMPLES, 2, generator=g)

    def __len__(self):
        return NUM_SAMPLES

    def __getitem__(self, i):
        return dict(inputs=self.x[i], labels=self.y[i])


def make_runner(work_dir,
                max_iters: int,
                model: ToyModel = None,
                resume: bool = False,
                optimizer_type: str = 'AdamSPD',
                checkpoint_interval: int = 3) -> Runner:
    """An iteration-based runner with an mmspd optimizer and LinearLR.

    Every runner gets a unique ``experiment_name``: mmengine keys its
    ``MessageHub``/``MMLogger``/``Visualizer`` singletons by that name, and
    two runners built within the same second would otherwise share them.
    """
    if model is None:
        model = ToyModel()
    return Runner(
        model=model,
        work_dir=str(work_dir),
        experiment_name=f'mmspd_toy_{uuid.uuid4().hex}',
        train_dataloader=dict(
            dataset=ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=BATCH_SIZE,
            num_workers=0,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(
            optimizer=dict(type=optimizer_type, lr=0.05, weight_decay=1.0)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=1000),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0,
                 end=5)
        ],
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook',
                            interval=checkpoint_interval, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        resume=resume,
        randomness=dict(seed=0),
        log_level='WARNING',
        default_scope='mmengine',
    )


def model_state(model) -> dict:
    """A detached copy of the model's tensors, by name."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
