# Swin-T UperNet fine-tuned on PASCAL-Context-59 (59 classes, 480x480) with
# AdamSPD; robustness test on the clean val set + fog, defocus_blur,
# gaussian_noise, brightness (ImageNet-C severity 3) in one test run.
#
# Schedule: 40k iterations (1.5k warm-up, poly decay), 4 GPUs x 4 images =
# total batch 16:  bash tools/dist_train.sh configs/pascal_ctx_spd.py 4
# Other GPU counts: auto_scale_lr scales the lr linearly from batch 16.
# Test:  python tools/test.py configs/pascal_ctx_spd.py CHECKPOINT
#
# Differs from pascal_ctx_adamw.py / pascal_ctx_l2sp.py only in this block.
# weight_decay is SPD's lambda (cross-validate it, e.g. 0.25-2). The new
# decode/auxiliary heads have no pretrained value to return to: lambda 0 and
# no stored anchor there (plain Adam); every backbone tensor, norms and
# position-bias tables included, is anchored at its Swin-T weights.
_base_ = './_base_/seg_pascal_ctx59.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='SPDOptimWrapperConstructor',
    optimizer=dict(
        type='AdamSPD', lr=6e-5, betas=(0.9, 0.999), weight_decay=1.0),
    paramwise_cfg=dict(
        custom_keys={
            'decode_head': dict(decay_mult=0., anchor='zero'),
            'auxiliary_head': dict(decay_mult=0., anchor='zero'),
        }))
