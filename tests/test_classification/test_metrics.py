"""MaskedAccuracy against hand-computed cases."""
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

from mmspd.classification.metrics import MaskedAccuracy

# 6 classes, the data set covers {1, 3, 4}. Scores per sample (rows):
SCORES = torch.tensor([
    # best overall is 0 (outside the subset); inside: 3 > 1 > 4
    [0.50, 0.10, 0.00, 0.30, 0.05, 0.05],
    # best overall is 4 (inside); inside: 4 > 1 > 3
    [0.10, 0.20, 0.05, 0.05, 0.55, 0.05],
    # best overall is 5 (outside); inside: 1 > 4 > 3
    [0.05, 0.30, 0.10, 0.05, 0.10, 0.40],
    # best overall is 2 (outside); inside: 4 > 3 > 1
    [0.00, 0.05, 0.60, 0.10, 0.25, 0.00],
])
LABELS = [3, 1, 1, 3]
SUBSET = [4, 1, 3]  # any order


def _data_samples():
    return [DataSample().set_gt_label(label).set_pred_score(score)
            for label, score in zip(LABELS, SCORES)]


def _samples():
    """The model outputs as the Evaluator hands them to a metric (dicts)."""
    return [sample.to_dict() for sample in _data_samples()]


def _one(gt, **pred):
    sample = DataSample().set_gt_label(gt)
    if 'score' in pred:
        sample.set_pred_score(pred['score'])
    else:
        sample.set_pred_label(pred['label'])
    return [sample.to_dict()]


def test_masked_top1_and_top2_by_hand():
    # restricted to {1, 3, 4}:
    #   sample 0: ranking 3, 1, 4 -> label 3 is top-1
    #   sample 1: ranking 4, 1, 3 -> label 1 is top-2 only
    #   sample 2: ranking 1, 4, 3 -> label 1 is top-1
    #   sample 3: ranking 4, 3, 1 -> label 3 is top-2 only
    metric = MaskedAccuracy(topk=(1, 2), label_subset=SUBSET)
    metric.process(None, _samples())
    result = metric.evaluate(4)
    assert result == {'accuracy/top1': 50.0, 'accuracy/top2': 100.0}
    # unmasked, top-1 is 0 of 4: the mask changes the answer
    assert MaskedAccuracy.calculate(SCORES, torch.tensor(LABELS),
                                    topk=(1, ))[0][0].item() == 0.0


def test_subset_comes_from_the_data_set_metainfo():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        evaluator = Evaluator(dict(type='MaskedAccuracy', topk=(1, )))
    evaluator.dataset_meta = dict(classes=tuple('abcdef'),
                                  label_subset=(1, 3, 4))
    evaluator.process(_data_samples())
    assert evaluator.evaluate(4) == {'accuracy/top1': 50.0}


def test_restricted_scores_are_renormalised_for_thresholds():
    metric = MaskedAccuracy(topk=(1, ), thrs=(0.5, ), label_subset=SUBSET)
    metric.process(None, _samples())
    # restricted and renormalised top-1 scores: 0.30/0.45, 0.55/0.80,
    # 0.30/0.45, 0.25/0.40 -> sample 0 (correct, 0.67) and sample 2
    # (correct, 0.67) pass 0.5
    assert metric.evaluate(4) == {'accuracy/top1': 50.0}
    metric = MaskedAccuracy(topk=(1, ), thrs=(0.7, ), label_subset=SUBSET)
    metric.process(None, _samples())
    assert metric.evaluate(4) == {'accuracy/top1': 0.0}


def test_errors_name_the_problem():
    metric = MaskedAccuracy()
    metric.dataset_meta = dict(classes=('a', 'b'))
    with pytest.raises(ValueError, match=r"metainfo has keys \['classes'\]"):
        metric.process(None, _samples())
    with pytest.raises(ValueError, match='distinct non-negative'):
        MaskedAccuracy(label_subset=[1, 1, 3])
    with pytest.raises(ValueError, match='label_subset is empty'):
        MaskedAccuracy(label_subset=[])
    with pytest.raises(ValueError, match='ground-truth label 2 is not'):
        MaskedAccuracy(label_subset=SUBSET).process(
            None, _one(2, score=SCORES[0]))
    with pytest.raises(ValueError, match="index 7 is outside the model's 6"):
        MaskedAccuracy(label_subset=[1, 7]).process(
            None, _one(1, score=SCORES[0]))
    with pytest.raises(ValueError, match='needs class scores'):
        MaskedAccuracy(label_subset=SUBSET).process(
            None, _one(1, label=1))
