# A tiny but real mmpretrain ViT (2 TransformerEncoderLayers, 32-d) on the
# 32x32 grayscale CustomDataset of tests/dataset_files.py, trained with
# mmengine's Runner (DDP when launched on N processes). The reference for
# tiny_vit_fsdp2.py, which differs only in the runner and its strategy.
# The tests set data_root.
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmspd'], allow_failed_imports=False)

data_root = 'data/tiny_cls'
num_classes = 3

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                  feedforward_channels=64),
        img_size=32,
        patch_size=8,
        in_channels=1,
        drop_rate=0.,
        drop_path_rate=0.),
    head=dict(type='VisionTransformerClsHead', num_classes=num_classes,
              in_channels=32, loss=dict(type='CrossEntropyLoss')))
data_preprocessor = dict(
    num_classes=num_classes, mean=[127.5], std=[127.5], to_rgb=False)

pipeline = [
    dict(type='LoadImageFromFile', color_type='grayscale'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    dataset=dict(type='CustomDataset', data_root=data_root,
                 data_prefix='train', pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    dataset=dict(type='CustomDataset', data_root=data_root,
                 data_prefix='val', pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# eps 1e-4: the key part of each attn.qkv.bias has a zero gradient in exact
# arithmetic (softmax ignores a shift shared by all keys), so its Adam
# update is rounding noise / eps; with eps 1e-6 the different summation
# orders of DDP and FSDP2 then move those weights by ~6e-6 (measured).
optim_wrapper = dict(
    constructor='SPDOptimWrapperConstructor',
    optimizer=dict(type='AdamSPD', lr=1e-2, weight_decay=1.0, eps=1e-4),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False,
                        begin=0, end=4)]
train_cfg = dict(by_epoch=False, max_iters=6, val_interval=1000)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=3, by_epoch=False),
    logger=dict(type='LoggerHook', interval=1))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='nccl'))
randomness = dict(seed=0)
log_level = 'INFO'
load_from = None
resume = False
# SPD's signals in the log at every iteration (compared across runners)
custom_hooks = [dict(type='SPDMonitorHook', interval=1, module_interval=1)]
