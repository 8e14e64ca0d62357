# Mask R-CNN Swin-T FPN 1x fine-tuned on COCO 2017 (80 classes) with AdamSPD
# on the backbone; robustness test on clean val2017 and the 15 ImageNet-C
# corruptions x 5 severities in one test run (box and mask AP; P, mPC, rPC).
#
# Schedule: 12 epochs (1k warm-up iterations, lr x0.1 after epochs 8 and
# 11), 8 GPUs x 2 images = total batch 16:
#   bash tools/dist_train.sh configs/coco_spd.py 8
# Other GPU counts: auto_scale_lr scales the lr linearly from batch 16.
# Test:  bash tools/dist_test.sh configs/coco_spd.py CHECKPOINT 8
#
# Differs from coco_adamw.py / coco_l2sp.py only in this block.
# weight_decay is SPD's lambda (cross-validate it, e.g. 0.25-2). The policy
# per module, written for any detector (name its new modules):
# - the backbone (no key): SPD toward its Swin-T weights, every tensor,
#   norms and position tables included; no other decay;
# - neck, rpn_head, roi_head have no pretrained value: decay_mult=0. (no
#   SPD), anchor='zero' (no anchor stored) and decoupled_decay=0.05: AdamW's
#   decoupled decay, the decay coco_adamw.py gives them, so they are
#   trained exactly as there.
# mmengine gives each parameter the options of one custom key: the longest
# one its name contains. This Mask R-CNN's neck and heads have no norm or
# position-table parameters; for a detector whose new modules have some
# that AdamW's recipe leaves undecayed, add a longer key for them without
# decoupled_decay (e.g. 'roi_head.bbox_head.norm': dict(decay_mult=0.,
# anchor='zero')).
_base_ = './_base_/coco_swin-t_mask-rcnn_1x_robust.py'

new_modules = dict(decay_mult=0., anchor='zero', decoupled_decay=0.05)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='SPDOptimWrapperConstructor',
    optimizer=dict(
        type='AdamSPD', lr=1e-4, betas=(0.9, 0.999), weight_decay=1.0),
    paramwise_cfg=dict(
        custom_keys={
            'neck': new_modules,
            'rpn_head': new_modules,
            'roi_head': new_modules,
        }))
