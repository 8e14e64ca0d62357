"""Detection results in the metafile: mmdet's CocoMetric keys under
OpenMMLab's names (box AP as Object Detection, mask AP as Instance
Segmentation), in percent, for a coco config."""
import json
import os.path as osp

import torch

from mmspd.zoo.model_index import ModelRecord, model_entry, results_entries
from tests.tool_modules import REPO

#: the shape RobustTestLoop writes for configs/coco_*.py (CocoMetric's
#: fractions; a sweep of 2 corruptions x 1 severity), values made up here
REPORT = {
    'id': 'clean', 'ood': [],
    'corruption_sweep': dict(corruptions=['fog', 'contrast'],
                             severities=[3], sets=['fog-3', 'contrast-3']),
    'metrics': {
        'clean/coco/bbox_mAP': 0.412, 'clean/coco/bbox_mAP_50': 0.634,
        'clean/coco/segm_mAP': 0.377, 'clean/coco/bbox_mAP_s': -1.0,
        'fog-3/coco/bbox_mAP': 0.301, 'fog-3/coco/segm_mAP': 0.275,
        'contrast-3/coco/bbox_mAP': 0.05, 'contrast-3/coco/segm_mAP': 0.041,
        'P/coco/bbox_mAP': 0.412, 'P/coco/segm_mAP': 0.377,
        'mPC/coco/bbox_mAP': 0.1755, 'mPC/coco/segm_mAP': 0.158,
        'rPC/coco/bbox_mAP': 42.6, 'rPC/coco/segm_mAP': 41.91,
        'fog-avg/coco/bbox_mAP': 0.301,
    }}


def test_box_and_mask_ap_are_two_tasks_in_percent():
    # CocoMetric's -1 (no small object in the set) is left out
    entries = results_entries(REPORT, 'COCO', 'Object Detection', {})
    assert entries[:2] == [
        dict(Task='Object Detection', Dataset='COCO',
             Metrics={'box AP': 41.2, 'box AP@0.5': 63.4}),
        dict(Task='Instance Segmentation', Dataset='COCO',
             Metrics={'mask AP': 37.7})]
    # the sweep's summary, not its 75 sets: mPC in percent, rPC already
    assert entries[2:] == [
        dict(Task='Object Detection', Dataset='COCO (mPC)',
             Metrics={'box AP': 17.55}),
        dict(Task='Instance Segmentation', Dataset='COCO (mPC)',
             Metrics={'mask AP': 15.8}),
        dict(Task='Object Detection', Dataset='COCO (rPC)',
             Metrics={'box AP': 42.6}),
        dict(Task='Instance Segmentation', Dataset='COCO (rPC)',
             Metrics={'mask AP': 41.91})]


def test_classification_metrics_keep_their_scale_and_task():
    report = {'id': 'real', 'ood': [], 'metrics': {
        'real/accuracy/top1': 81.234}}
    assert results_entries(report, 'DomainNet', 'Image Classification',
                           {}) == [dict(Task='Image Classification',
                                        Dataset='DomainNet',
                                        Metrics={'Top 1 Accuracy': 81.23})]


def test_a_coco_config_is_an_spd_object_detection_model(tmp_path):
    results = tmp_path / 'robustness.json'
    results.write_text(json.dumps(REPORT))
    weights = tmp_path / 'coco_spd.pth'
    torch.save({'state_dict': {'w': torch.zeros(3, 2)}}, str(weights))
    entry = model_entry(ModelRecord(
        name='mask-rcnn_swin-t_coco_spd',
        config=osp.join(REPO, 'configs', 'coco_spd.py'),
        results=str(results), weights=str(weights), dataset='COCO'),
        root=REPO, weights_url='https://example.org')
    assert entry['In Collection'] == 'SPD'
    assert entry['Metadata']['Optimizer'] == 'AdamSPD'
    assert entry['Metadata']['SPD Lambda'] == 1.0
    assert entry['Metadata']['Epochs'] == 12
    assert entry['Results'][0]['Task'] == 'Object Detection'
    assert entry['Weights'] == 'https://example.org/coco_spd.pth'
