# CLIP ViT-B/16 fine-tuned with AdamW:
# ImageNet (ID) -> ImageNet-V2, -Sketch, -A, -R (OOD).
# Recipe (model, augmentation, schedule, data, test sets):
# configs/_base_/imagenet_clip_vit-b16.py and
# configs/_base_/clip_vit-b16_finetune.py.
#
# Total batch 512 assumed (8 GPUs x 64 images):
#   bash tools/dist_train.sh configs/imagenet_adamw.py 8
# Other totals: auto_scale_lr scales the lr linearly from 512.
# Test (ID + OOD sets, one table, robustness.json in the work dir):
#   python tools/test.py configs/imagenet_adamw.py CHECKPOINT
#
# Differs from imagenet_spd.py / imagenet_l2sp.py
# only in the optimizer: the AdamW
# baseline, lr 2e-5, decoupled weight decay 0.1 toward 0, not applied to
# norms, biases, the class token and position embedding (DeiT's recipe).
_base_ = './_base_/imagenet_clip_vit-b16.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=2e-5, betas=(0.9, 0.999), weight_decay=0.1),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={
            '.cls_token': dict(decay_mult=0.),
            '.pos_embed': dict(decay_mult=0.),
        }),
    clip_grad=dict(max_norm=1.0))
