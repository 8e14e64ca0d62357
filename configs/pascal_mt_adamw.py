# Swin-T UperNet fine-tuned on the PASCAL_MT semantic task (21 classes,
# 480x480 crops) with AdamW (vanilla fine-tuning, mmseg's Swin recipe);
# robustness test on the clean val set + fog, defocus_blur, gaussian_noise,
# brightness (ImageNet-C severity 3) in one test run.
#
# Schedule: 40k iterations (1.5k warm-up, poly decay), 4 GPUs x 4 images =
# total batch 16:  bash tools/dist_train.sh configs/pascal_mt_adamw.py 4
# Other GPU counts: auto_scale_lr scales the lr linearly from batch 16.
# Test:  python tools/test.py configs/pascal_mt_adamw.py CHECKPOINT
#
# Differs from pascal_mt_spd.py / pascal_mt_l2sp.py only in this block:
# weight decay 0.01 toward zero, none on norms and position embeddings.
_base_ = './_base_/seg_pascal_mt.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='SPDOptimWrapperConstructor',
    optimizer=dict(
        type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.),
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.),
        }))
