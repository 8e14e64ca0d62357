# LP-FT, stage 1 (linear probe): CLIP ViT-B/16 on DomainNet real, only the
# new linear head trains on the frozen CLIP features.
# Kumar et al., "Fine-Tuning can Distort Pretrained Features and
# Underperform Out-of-Distribution" (ICLR 2022): probe first, then fine-tune
# everything from the probed head (stage 2: domainnet_lpft_adamw.py or
# domainnet_lpft_spd.py). Two commands:
#   bash tools/dist_train.sh configs/domainnet_lpft_probe.py 8
#   bash tools/dist_train.sh configs/domainnet_lpft_spd.py 8 --cfg-options \
#     model.head.init_cfg.checkpoint=work_dirs/domainnet_lpft_probe/best_accuracy_top1_epoch_N.pth
#
# Recipe: configs/_base_/domainnet_clip_vit-b16.py, except: the whole
# backbone frozen (frozen_stages=12: patch/position embeddings, class
# token, pre-norm, all 12 blocks and the final norm get requires_grad=False,
# so nothing is stored or computed for them), no drop-path (the frozen
# features stay deterministic), AdamW lr 1e-3 for the head (a probe's usual
# range; not a number from the SPD or LP-FT papers: cross-validate it),
# 10 epochs. Selection: best ID validation top-1 (real_val_split).
_base_ = './_base_/domainnet_clip_vit-b16.py'

model = dict(backbone=dict(frozen_stages=12, drop_path_rate=0.))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999),
                   weight_decay=0.),
    clip_grad=dict(max_norm=1.0))
max_epochs = 10
warmup_epochs = 1
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs,
         eta_min=0., by_epoch=True, begin=warmup_epochs, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
