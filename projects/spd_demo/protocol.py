"""The demo's protocol: tasks, methods, grids, seeds, fixed in advance.

Chosen before any result was seen, so that fine-tuning needs real
adaptation (the regime SPD is about):

* pretraining: digits 0-4, heavily augmented (rotation, blur, noise,
  dimming), so the features are broad;
* fine-tuning (ID): digits 5-9, classes the pretrained model never learnt,
  30 clean images per class; ID validation: 30 other images per class;
  ID test: the rest; OOD: the ID test images rotated, noisy, blurred, dimmed;
* each method's regularisation strength comes from a grid of the same size
  (3), picked by mean ID *validation* accuracy over the seeds (ties: the
  first value in grid order); test and OOD sets are never used to choose;
* same epochs, learning-rate schedule, batches and seeds for every method
  (all in ``configs/demo/_base_/lenet5_digits59_finetune.py``);
* a reference row, not a compared method: the new head trained on frozen
  pretrained features (shows how much adaptation the task needs);
* LP-FT: those linear probes (one per seed) as the first stage, then full
  fine-tuning with AdamW from the probed head, the backbone again from the
  pretrained file; its weight decay from the same-size grid as AdamW's,
  picked the same way;
* WiSE-FT of the selected AdamW and AdamSPD runs of every seed, at fixed
  alphas (0, 0.25, 0.5, 0.75, 1): a curve, nothing selected on it; the
  table's WiSE-FT rows are alpha 0.5, fixed in advance.
"""
import os.path as osp
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

from .data import DigitSplits


#: The repository this project belongs to (``projects/spd_demo/`` in it).
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def config_root() -> str:
    """The repository's ``configs/`` folder, which holds the demo's configs
    (``configs/demo``)."""
    root = osp.join(REPO, 'configs')
    if not osp.isdir(osp.join(root, 'demo')):
        raise FileNotFoundError(f'Cannot find the demo configs: expected '
                                f'the folder {osp.join(root, "demo")!r} in '
                                f'the repository {REPO!r}')
    return root


@dataclass(frozen=True)
class Method:
    """One fine-tuning method of the demo.

    Args:
        key: short name: config ``lenet5_digits59_<key>.py``, folders,
            published model name.
        name: name in the table and figure.
        strength: what the config's ``weight_decay`` means for it.
        grid: the ``weight_decay`` values tried (empty: the config's value
            only, no selection).
    """
    key: str
    name: str
    strength: str
    grid: Tuple[float, ...] = ()

    @property
    def config(self) -> str:
        return osp.join(config_root(), 'demo',
                        f'lenet5_digits59_{self.key}.py')


#: The compared methods, each with a 3-value grid (decided in advance:
#: log-spaced, weak to strong; SPD's lambda lives in (0, 1], 1 = the paper's
#: default, full projection).
METHODS: Tuple[Method, ...] = (
    Method('adamw', 'AdamW', 'weight decay', (0.01, 0.1, 1.0)),
    Method('l2sp', 'L2-SP', 'L2-SP strength', (0.01, 0.1, 1.0)),
    Method('spd', 'AdamSPD', 'lambda', (0.1, 0.3, 1.0)),
)
#: The reference row: the head alone on frozen pretrained features.
LINEAR_PROBE = Method('linear-probe', 'head only (frozen backbone)', '')
#: LP-FT: AdamW from the linear probe's head (its first stage: the
#: reference runs), same grid as AdamW.
LPFT = Method('lpft', 'LP-FT (probe, then AdamW)', 'weight decay',
              (0.01, 0.1, 1.0))
#: Methods whose selected runs get a WiSE-FT sweep, and its alphas.
WISE_FT_METHODS: Tuple[str, ...] = ('adamw', 'spd')
WISE_FT_ALPHAS: Tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)

PRETRAIN_CONFIG = 'lenet5_digits04_pretrain.py'
#: RobustTestLoop's metric for the demo (top-1 accuracy in %): what the
#: stages record and the report shows.
METRIC = 'accuracy/top1'


@dataclass(frozen=True)
class DemoProtocol:
    """Everything the demo runs.

    Args:
        methods: the compared methods; their grids must have equal sizes.
        seeds: seeds of the fine-tuning runs (head init, data order), the
            same for every method and grid value.
        reference: a method run with its config's settings and reported
            apart (``None``: skip).
        lpft: the LP-FT method, whose first stage is the reference run of
            the same seed (``None``: skip; needs ``reference``).
        wise_ft_methods: keys of the methods whose selected runs get a
            WiSE-FT sweep at ``wise_ft_alphas`` (empty: none).
        pretrain_epochs / finetune_epochs: ``None`` keeps the configs'
            epochs; a number overrides them (and the cosine schedule's
            length), for quick runs.
        splits: how the digits are split.
    """
    methods: Tuple[Method, ...] = METHODS
    seeds: Tuple[int, ...] = (0, 1, 2)
    reference: Optional[Method] = LINEAR_PROBE
    lpft: Optional[Method] = LPFT
    wise_ft_methods: Tuple[str, ...] = WISE_FT_METHODS
    wise_ft_alphas: Tuple[float, ...] = WISE_FT_ALPHAS
    pretrain_epochs: Optional[int] = None
    finetune_epochs: Optional[int] = None
    splits: DigitSplits = field(default_factory=DigitSplits)

    def __post_init__(self) -> None:
        if not self.methods:
            raise ValueError('The demo needs at least one method')
        compared = self.methods + ((self.lpft, ) if self.lpft else ())
        sizes = {m.name: len(m.grid) for m in compared}
        if len(set(sizes.values())) != 1 or 0 in sizes.values():
            raise ValueError(f'Every method needs a non-empty grid of the '
                             f'same size (a fair selection), got {sizes}')
        keys = [m.key for m in compared] + (
            [self.reference.key] if self.reference else [])
        if len(set(keys)) != len(keys):
            raise ValueError(f'Method keys must be unique, got {keys}')
        if self.lpft is not None and self.reference is None:
            raise ValueError('LP-FT starts from the linear probe: lpft '
                             'needs the reference (linear-probe) method')
        unknown = [k for k in self.wise_ft_methods
                   if k not in [m.key for m in self.methods]]
        if unknown:
            raise ValueError(f'WiSE-FT methods {unknown} are not among the '
                             f'compared methods '
                             f'{[m.key for m in self.methods]}')
        if self.wise_ft_methods:
            from mmspd.robust_ft.wise_ft import check_alphas
            check_alphas(self.wise_ft_alphas)
        seeds: Sequence = self.seeds
        if (not seeds or len(set(seeds)) != len(seeds)
                or not all(isinstance(s, int) and s >= 0 for s in seeds)):
            raise ValueError(f'Invalid seeds {seeds!r}: expected distinct '
                             f'integers >= 0, at least one')
        for name in ('pretrain_epochs', 'finetune_epochs'):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f'Invalid {name} {value!r}: expected None '
                                 f'or an integer >= 1')
