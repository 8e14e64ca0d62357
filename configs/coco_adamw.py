# Mask R-CNN Swin-T FPN 1x fine-tuned on COCO 2017 (80 classes) with AdamW
# (vanilla fine-tuning, mmdet's Swin recipe); robustness test on clean
# val2017 and the 15 ImageNet-C corruptions x 5 severities in one test run
# (box and mask AP; P, mPC, rPC).
#
# Schedule: 12 epochs (1k warm-up iterations, lr x0.1 after epochs 8 and
# 11), 8 GPUs x 2 images = total batch 16:
#   bash tools/dist_train.sh configs/coco_adamw.py 8
# Other GPU counts: auto_scale_lr scales the lr linearly from batch 16.
# Test:  bash tools/dist_test.sh configs/coco_adamw.py CHECKPOINT 8
#
# Differs from coco_spd.py / coco_l2sp.py only in this block: mmdet's
# optimizer, weight decay 0.05 toward zero on every tensor except norms and
# position tables (mmengine gives each parameter the options of the longest
# custom key contained in its name).
_base_ = './_base_/coco_swin-t_mask-rcnn_1x_robust.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='SPDOptimWrapperConstructor',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.),
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.),
        }))
