# Mask R-CNN Swin-T FPN 1x fine-tuned on COCO 2017 (80 classes) with Adam +
# L2-SP on the backbone (the baseline of the SPD paper); robustness test on
# clean val2017 and the 15 ImageNet-C corruptions x 5 severities in one test
# run (box and mask AP; P, mPC, rPC).
#
# Schedule: 12 epochs (1k warm-up iterations, lr x0.1 after epochs 8 and
# 11), 8 GPUs x 2 images = total batch 16:
#   bash tools/dist_train.sh configs/coco_l2sp.py 8
# Other GPU counts: auto_scale_lr scales the lr linearly from batch 16.
# Test:  bash tools/dist_test.sh configs/coco_l2sp.py CHECKPOINT 8
#
# Differs from coco_spd.py / coco_adamw.py only in this block.
# weight_decay is the L2-SP coefficient (cross-validate it, e.g. 1e-3-1):
# every backbone tensor is pulled toward its Swin-T weights, no other
# decay. The neck and heads are as in coco_spd.py: no L2-SP
# (decay_mult=0.), no stored anchor, AdamW's decoupled decay 0.05 as in
# coco_adamw.py (the custom-key rules are explained in coco_spd.py).
_base_ = './_base_/coco_swin-t_mask-rcnn_1x_robust.py'

new_modules = dict(decay_mult=0., anchor='zero', decoupled_decay=0.05)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='SPDOptimWrapperConstructor',
    optimizer=dict(
        type='AdamL2SP', lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2),
    paramwise_cfg=dict(
        custom_keys={
            'neck': new_modules,
            'rpn_head': new_modules,
            'roi_head': new_modules,
        }))
