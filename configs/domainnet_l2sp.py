# CLIP ViT-B/16 fine-tuned with AdamL2SP:
# DomainNet real (ID) -> sketch, painting, infograph,
# clipart (OOD).
# Recipe (model, augmentation, schedule, data, test sets):
# configs/_base_/domainnet_clip_vit-b16.py and
# configs/_base_/clip_vit-b16_finetune.py.
#
# Total batch 256 assumed (8 GPUs x 32 images):
#   bash tools/dist_train.sh configs/domainnet_l2sp.py 8
# Other totals: auto_scale_lr scales the lr linearly from 256.
# Test (ID + OOD sets, one table, robustness.json in the work dir):
#   python tools/test.py configs/domainnet_l2sp.py CHECKPOINT
#
# Differs from domainnet_spd.py / domainnet_adamw.py
# only in the optimizer: Adam +
# L2-SP, lr 2e-5, strength (weight_decay) 0.01, the L2-SP paper's alpha:
# gradient + 0.01 * (p - a) toward the CLIP weights, every step, every
# backbone tensor. Cross-validate it (e.g. 1e-3 .. 1e-1), as the paper does
# for every method. As for SPD, the new head gets no pull (decay_mult 0) and
# stores no anchor.
_base_ = './_base_/domainnet_clip_vit-b16.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='SPDOptimWrapperConstructor',
    optimizer=dict(
        type='AdamL2SP', lr=2e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        custom_keys={'head': dict(decay_mult=0., anchor='zero')}),
    clip_grad=dict(max_norm=1.0))
