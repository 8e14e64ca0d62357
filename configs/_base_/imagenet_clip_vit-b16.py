# Shared by configs/imagenet_{spd,adamw,l2sp}.py: CLIP ViT-B/16 fine-tuned on
# ImageNet-1k (ID) and tested on ImageNet val + ImageNet-V2, -Sketch, -A, -R
# (OOD), 1000 classes.
#
# - Data (see docs/reproduce.md): data/imagenet in mmpretrain's layout (train/, val/,
#   meta/), data/imagenetv2-matched-frequency-format-val/{0..999}/,
#   data/imagenet-sketch/sketch/<wnid>/, data/imagenet-a/<wnid>/ and
#   data/imagenet-r/<wnid>/ (200 classes each). Labels of every OOD set are
#   ImageNet-1k indices; ImageNet-A/-R are scored with the logits restricted
#   to their 200 classes (MaskedAccuracy, set below with their data sets).
# - Schedule: 30 epochs, 1 epoch linear warm-up, then cosine decay to 0.
#   ImageNet has no separate ID validation split in this protocol (its val
#   set is the ID test set), so validation is for monitoring only and the
#   last checkpoint is the result; no checkpoint is chosen on a test set.
# - Batch: 64 images per GPU, total 512 assumed (8 GPUs x 64);
#   auto_scale_lr scales the lr linearly to the actual total batch.
_base_ = ['./clip_vit-b16_finetune.py']

data_root = 'data/imagenet'
num_classes = 1000
model = dict(head=dict(num_classes=num_classes))
data_preprocessor = dict(num_classes=num_classes)

train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(
        _delete_=True,
        type='ImageNet',
        data_root=data_root,
        split='train',
        pipeline=_base_.train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(
        _delete_=True,
        type='ImageNet',
        data_root=data_root,
        split='val',
        pipeline=_base_.test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# One test run: ImageNet val (ID) and the four shifts; one table with
# top-1/top-5 per set and their OOD average, also in robustness.json.
# ImageNet-C (15 corruptions x 5 severities, mCE) in the same run:
# configs/imagenet_spd_imagenet-c.py adds test_cfg.corruption_sweep (data in
# data/imagenet-c/<corruption>/<severity>/<wnid>/).
masked_accuracy = dict(type='MaskedAccuracy', topk=(1, 5))
test_cfg = dict(
    type='RobustTestLoop',
    id_name='imagenet',
    ood_sets=[
        dict(name='imagenet-v2',
             dataset=dict(_delete_=True, type='ImageNetV2',
                          data_root='data/imagenetv2-matched-frequency-format-val',
                          pipeline=_base_.test_pipeline)),
        dict(name='imagenet-sketch',
             dataset=dict(_delete_=True, type='ImageNetSketch',
                          data_root='data/imagenet-sketch',
                          data_prefix='sketch',
                          pipeline=_base_.test_pipeline)),
        dict(name='imagenet-a',
             dataset=dict(_delete_=True, type='ImageNetA',
                          data_root='data/imagenet-a',
                          pipeline=_base_.test_pipeline),
             evaluator=masked_accuracy),
        dict(name='imagenet-r',
             dataset=dict(_delete_=True, type='ImageNetR',
                          data_root='data/imagenet-r',
                          pipeline=_base_.test_pipeline),
             evaluator=masked_accuracy),
    ])

max_epochs = 30
warmup_epochs = 1
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs,
         eta_min=0., by_epoch=True, begin=warmup_epochs, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))
auto_scale_lr = dict(enable=True, base_batch_size=512)
