# Shared by configs/pascal_ctx_*.py and configs/pascal_mt_*.py: what does not
# depend on the data set or the optimizer.
#
# - Model: mmseg's Swin-T UperNet (mmseg::_base_/models/upernet_swin.py is
#   Swin-T: embed 96, depths 2-2-6-2, heads 3-6-12-24, window 7), backbone
#   initialised from the ImageNet-1k Swin-T weights through init_cfg, as in
#   mmseg::swin/
#   swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py.
#   Those loaded weights are the anchors of AdamSPD / AdamL2SP (captured at
#   the first step, after init_weights).
# - Schedule: 40k iterations, 1.5k linear warm-up then poly decay (mmseg's
#   Swin recipe), validation every 4k, the best clean-val mIoU checkpoint kept.
# - Batch: 4 images per GPU; auto_scale_lr scales the lr from a total batch of
#   16 (4 GPUs x 4) to the actual one (linear scaling rule).
# - Test: RobustTestLoop evaluates the clean val set and the val set under each
#   corruption in `corruptions` (ImageNet-C, `corruption_severity`) in one run.
_base_ = [
    'mmseg::_base_/models/upernet_swin.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
    './swin-t_in1k_pretrained.py',
]
custom_imports = dict(imports=['mmspd', 'mmspd.segmentation'],
                      allow_failed_imports=False)

# The Swin-T file and the strict pretrained-loading check (what may differ
# between the classifier's file and mmseg's backbone):
# ./swin-t_in1k_pretrained.py.
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained',
                                checkpoint={{_base_.swin_t_checkpoint}})))
custom_hooks = [dict(type='StrictLoadingHook')]

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500,
         end=40000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=4000)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4000,
                    max_keep_ckpts=1, save_best='mIoU', rule='greater'))
auto_scale_lr = dict(enable=True, base_batch_size=16)

# OOD sets: the clean val images under each corruption, corrupted right after
# loading (labels untouched), seeded per image file name: the same images in
# every run.
# Severity sweep (off by default; docs/robustness_benchmark.md): every
# corruption of a set at every severity, one test set each ('fog-1' ..
# 'fog-5'), summarised as P (clean), mPC (mean over the sweep sets) and
# rPC = mPC / P (Michaelis et al. 2019) next to the sets below, e.g.
#   --cfg-options test_cfg.corruption_sweep.corruptions=benchmark
# (15 corruptions x severities 1-5: 75 more evaluations of the val set);
# smaller: corruptions=holdout, corruptions='[fog,brightness]',
# test_cfg.corruption_sweep.severities='[1,3,5]'.
corruptions = ['fog', 'defocus_blur', 'gaussian_noise', 'brightness']
corruption_severity = 3
test_cfg = dict(
    _delete_=True,
    type='RobustTestLoop',
    id_name='clean',
    ood_sets=[
        dict(name=name,
             transforms=[dict(type='ImageCorruption', corruption=name,
                              severity=corruption_severity)],
             insert_after='LoadImageFromFile') for name in corruptions
    ])
