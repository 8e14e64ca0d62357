# CLIP ViT-B/16 fine-tuned with AdamSPD:
# ImageNet (ID) -> ImageNet-V2, -Sketch, -A, -R (OOD).
# Recipe (model, augmentation, schedule, data, test sets):
# configs/_base_/imagenet_clip_vit-b16.py and
# configs/_base_/clip_vit-b16_finetune.py.
#
# Total batch 512 assumed (8 GPUs x 64 images):
#   bash tools/dist_train.sh configs/imagenet_spd.py 8
# Other totals: auto_scale_lr scales the lr linearly from 512.
# Test (ID + OOD sets, one table, robustness.json in the work dir):
#   python tools/test.py configs/imagenet_spd.py CHECKPOINT
#
# Differs from imagenet_adamw.py / imagenet_l2sp.py
# only in the optimizer: AdamSPD,
# the paper's lr 2e-5 and lambda (weight_decay) 1.0. Every backbone tensor
# is anchored at its CLIP weights; the new head gets no SPD (decay_mult 0)
# and stores no anchor (anchor='zero'): plain Adam there.
_base_ = './_base_/imagenet_clip_vit-b16.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='SPDOptimWrapperConstructor',
    optimizer=dict(
        type='AdamSPD', lr=2e-5, betas=(0.9, 0.999), weight_decay=1.0),
    paramwise_cfg=dict(
        custom_keys={'head': dict(decay_mult=0., anchor='zero')}),
    clip_grad=dict(max_norm=1.0))
