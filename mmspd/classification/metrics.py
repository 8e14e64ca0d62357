"""``MaskedAccuracy``: top-k accuracy over a subset of the classes.

ImageNet-A and ImageNet-R contain 200 of the 1000 ImageNet classes. Their
protocol scores a 1000-way classifier with its logits restricted to those
200: a prediction of one of the other 800 classes cannot happen.
"""
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmpretrain.evaluation import Accuracy
from mmpretrain.registry import METRICS


@METRICS.register_module()
class MaskedAccuracy(Accuracy):
    """:class:`mmpretrain.evaluation.Accuracy` on the classes of a subset.

    For each sample the ``C`` class scores are cut to the columns
    ``label_subset`` (then renormalised to sum to 1, which is the softmax of
    the restricted logits and keeps ``thrs`` meaningful), the ground-truth
    label is replaced by its position in the subset, and top-k accuracy is
    computed as usual. The metric keys are those of ``Accuracy``
    (``accuracy/top1``, ...), so a masked OOD set lines up with the others
    in :class:`~mmspd.engine.runner.RobustTestLoop`'s table and average.

    Args:
        topk, thrs, collect_device, prefix: as ``Accuracy``.
        label_subset: the class indices to keep. ``None`` (default) takes
            ``dataset_meta['label_subset']``, which
            :class:`~mmspd.classification.ImageNetA` and
            :class:`~mmspd.classification.ImageNetR` provide, so the mask
            always matches the data set being evaluated.

    Raises ``ValueError`` when there is no subset, when it is empty, has
    duplicates or indices outside ``[0, C)``, when a ground-truth label is
    not in the subset, or when the model gives labels without scores.
    """

    def __init__(self,
                 topk: Union[int, Sequence[int]] = (1, ),
                 thrs: Union[float, Sequence[Optional[float]], None] = 0.,
                 label_subset: Optional[Sequence[int]] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(topk=topk, thrs=thrs, collect_device=collect_device,
                         prefix=prefix)
        self.label_subset = (None if label_subset is None else
                             self._check_subset(label_subset, 'label_subset'))

    @staticmethod
    def _check_subset(subset, where: str) -> List[int]:
        try:
            indices = [int(i) for i in subset]
        except (TypeError, ValueError):
            raise ValueError(f'MaskedAccuracy: {where} must be a sequence of '
                             f'class indices, got {subset!r}') from None
        if not indices:
            raise ValueError(f'MaskedAccuracy: {where} is empty')
        if len(set(indices)) != len(indices) or min(indices) < 0:
            raise ValueError(f'MaskedAccuracy: {where} must hold distinct '
                             f'non-negative class indices, got {indices}')
        return sorted(indices)

    def _subset(self) -> List[int]:
        if self.label_subset is not None:
            return self.label_subset
        meta = self.dataset_meta or {}
        if 'label_subset' not in meta:
            raise ValueError(
                'MaskedAccuracy needs label_subset=... or a data set whose '
                'metainfo has "label_subset" (ImageNetA, ImageNetR); the '
                f'data set metainfo has keys {sorted(meta)}')
        self.label_subset = self._check_subset(
            meta['label_subset'], 'dataset_meta["label_subset"]')
        return self.label_subset

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep each sample's restricted scores and its label's position."""
        subset = self._subset()
        position: Dict[int, int] = {c: i for i, c in enumerate(subset)}
        columns = torch.tensor(subset)
        for sample in data_samples:
            if 'pred_score' not in sample:
                raise ValueError('MaskedAccuracy needs class scores '
                                 '(pred_score); the model gave only labels')
            score = sample['pred_score'].detach().cpu()
            if subset[-1] >= score.numel():
                raise ValueError(f'MaskedAccuracy: label_subset index '
                                 f'{subset[-1]} is outside the model\'s '
                                 f'{score.numel()} classes')
            gt = int(sample['gt_label'].reshape(-1)[0])
            if gt not in position:
                raise ValueError(f'MaskedAccuracy: ground-truth label {gt} '
                                 f'is not among the {len(subset)} classes '
                                 f'of label_subset')
            kept = score[columns]
            self.results.append(dict(
                pred_score=kept / kept.sum().clamp_min(1e-12),
                gt_label=torch.tensor([position[gt]])))
