# Swin-T UperNet fine-tuned on PASCAL-Context-59 (59 classes, 480x480) with
# Adam + L2-SP (the baseline of the SPD paper); robustness test on the clean
# val set + fog, defocus_blur, gaussian_noise, brightness (ImageNet-C
# severity 3) in one test run.
#
# Schedule: 40k iterations (1.5k warm-up, poly decay), 4 GPUs x 4 images =
# total batch 16:  bash tools/dist_train.sh configs/pascal_ctx_l2sp.py 4
# Other GPU counts: auto_scale_lr scales the lr linearly from batch 16.
# Test:  python tools/test.py configs/pascal_ctx_l2sp.py CHECKPOINT
#
# Differs from pascal_ctx_spd.py / pascal_ctx_adamw.py only in this block.
# weight_decay is the L2-SP coefficient (cross-validate it, e.g. 1e-3-1):
# every backbone tensor is pulled toward its Swin-T weights; the new heads
# are not regularised (coefficient 0, no stored anchor), as with SPD.
_base_ = './_base_/seg_pascal_ctx59.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='SPDOptimWrapperConstructor',
    optimizer=dict(
        type='AdamL2SP', lr=6e-5, betas=(0.9, 0.999), weight_decay=1e-2),
    paramwise_cfg=dict(
        custom_keys={
            'decode_head': dict(decay_mult=0., anchor='zero'),
            'auxiliary_head': dict(decay_mult=0., anchor='zero'),
        }))
