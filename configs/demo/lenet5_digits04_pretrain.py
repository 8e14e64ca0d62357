# Pretraining stage of the demo: LeNet-5 learns digits 0-4 from heavily
# augmented images (random rotation, blur, noise, dimming), so that its
# features are broad: they see digits under the shifts the OOD sets use.
#   python tools/train.py configs/demo/lenet5_digits04_pretrain.py
_base_ = ['./_base_/lenet5_digits.py']

data_root = 'work_dirs/demo/data/digits04'  # tools/demo.py overrides it

test_pipeline = [
    dict(type='LoadImageFromFile', color_type='grayscale'),
    dict(type='PackInputs'),
]
train_pipeline = [
    dict(type='LoadImageFromFile', color_type='grayscale'),
    dict(type='Rotate', magnitude_range=(0., 45.), magnitude_std='inf',
         prob=0.6, random_negative_prob=0.5, interpolation='bilinear'),
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0),
         magnitude_std='inf', prob=0.4),
    dict(type='AddGaussianNoise', std=(0., 70.), prob=0.4),
    dict(type='Brightness', magnitude_range=(0., -0.7), magnitude_std='inf',
         prob=0.4, random_negative_prob=0.),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64, num_workers=0,
    dataset=dict(type='CustomDataset', data_root=data_root,
                 data_prefix='train', pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=150, num_workers=0,
    dataset=dict(type='CustomDataset', data_root=data_root,
                 data_prefix='val', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_cfg = dict()

optim_wrapper = dict(optimizer=dict(type='Adam', lr=3e-3))
max_epochs = 30
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True)
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs,
                 val_interval=max_epochs)
