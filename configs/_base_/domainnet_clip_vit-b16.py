# Shared by configs/domainnet_{spd,adamw,l2sp}.py: CLIP ViT-B/16 fine-tuned
# on DomainNet `real` (ID) and tested on real + sketch, painting, infograph,
# clipart (OOD), 345 classes.
#
# - Data: data/domainnet/<domain>/<class>/*.jpg with the split files next to
#   the domain folders (see mmspd/classification/domainnet.py and docs/reproduce.md):
#   train on real_train_split.txt, select the checkpoint on the ID validation
#   list real_val_split.txt (carved out of the official real_train.txt; make
#   it with tools/dataset_converters/domainnet_val_split.py if you do not
#   have the protocol's lists), test on real_test.txt and <domain>_test.txt.
#   No test list is ever used for model selection. Low-data runs:
#   --cfg-options train_dataloader.dataset.split=train_10_percent_split
# - Schedule: 60 epochs, 1 epoch linear warm-up, then cosine decay to 0; the
#   checkpoint with the best ID validation top-1 is kept.
# - Batch: 32 images per GPU, total 256 assumed (8 GPUs x 32);
#   auto_scale_lr scales the lr linearly to the actual total batch.
_base_ = ['./clip_vit-b16_finetune.py']

data_root = 'data/domainnet'
num_classes = 345
model = dict(head=dict(num_classes=num_classes))
data_preprocessor = dict(num_classes=num_classes)

train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    dataset=dict(
        _delete_=True,
        type='DomainNet',
        data_root=data_root,
        domain='real',
        split='train_split',
        pipeline=_base_.train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(
        _delete_=True,
        type='DomainNet',
        data_root=data_root,
        domain='real',
        split='val_split',
        pipeline=_base_.test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(
        _delete_=True,
        type='DomainNet',
        data_root=data_root,
        domain='real',
        split='test',
        pipeline=_base_.test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = val_evaluator

# One test run: real (ID) and each OOD domain's test list; one table with
# top-1/top-5 per domain and their OOD average, also in robustness.json.
test_cfg = dict(
    type='RobustTestLoop',
    id_name='real',
    ood_sets=[
        dict(name='sketch', dataset=dict(domain='sketch')),
        dict(name='painting', dataset=dict(domain='painting')),
        dict(name='infograph', dataset=dict(domain='infograph')),
        dict(name='clipart', dataset=dict(domain='clipart')),
    ])

max_epochs = 60
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
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1,
                    save_best='accuracy/top1', rule='greater'))
auto_scale_lr = dict(enable=True, base_batch_size=256)
