# The demo's fine-tuning task, shared by its AdamW, L2-SP and AdamSPD
# configs: digits 5-9 (classes the pretrained model never learnt), 30 clean
# training images per class, the same schedule for every method. The
# backbone starts from the pretraining stage's weights (init_cfg, so the SPD
# and L2-SP anchors are the pretrained weights); the head is new. Every
# method regularises the pretrained backbone only: the head has
# decay_mult=0 (no weight decay / L2-SP / SPD on it).
# ID test: the clean test images; OOD: the same images rotated, noisy,
# blurred and dimmed, evaluated by RobustTestLoop in one test run.
_base_ = ['./lenet5_digits.py']

data_root = 'work_dirs/demo/data/digits59'  # tools/demo.py overrides it
pretrained = 'work_dirs/demo/pretrain/lenet5_digits04.pth'

model = dict(backbone=dict(init_cfg=dict(
    type='Pretrained', checkpoint=pretrained, prefix='backbone.')))

# clean images only: fine-tuning sees no augmentation (the narrow ID set)
clean_pipeline = [
    dict(type='LoadImageFromFile', color_type='grayscale'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=30, num_workers=0,
    dataset=dict(type='CustomDataset', data_root=data_root,
                 data_prefix='train', pipeline=clean_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=150, num_workers=0,
    dataset=dict(type='CustomDataset', data_root=data_root,
                 data_prefix='val', pipeline=clean_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = dict(
    batch_size=200, num_workers=0,
    dataset=dict(type='CustomDataset', data_root=data_root,
                 data_prefix='test', pipeline=clean_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_cfg = dict()
test_evaluator = dict(type='Accuracy', topk=(1, ))
test_cfg = dict(
    type='RobustTestLoop',
    id_name='clean',
    ood_sets=[
        dict(name='rotate', transforms=[
            dict(type='Rotate', angle=35., prob=1., random_negative_prob=0.,
                 interpolation='bilinear')]),
        dict(name='noise', transforms=[
            dict(type='AddGaussianNoise', std=50., seed=0)]),
        dict(name='blur', transforms=[
            dict(type='GaussianBlur', radius=1.5, prob=1.)]),
        # the digits are white on black: scaling every pixel by 0.4 scales
        # the stroke/background contrast to 40 %
        dict(name='low_contrast', transforms=[
            dict(type='Brightness', magnitude=-0.6, prob=1.,
                 random_negative_prob=0.)]),
    ])

# Each method's config sets the optimizer type and its regularisation
# strength (`weight_decay`); everything else here is the same for all.
optim_wrapper = dict(
    constructor='SPDOptimWrapperConstructor',
    optimizer=dict(lr=1e-3, betas=(0.9, 0.999)),
    paramwise_cfg=dict(custom_keys={'head': dict(decay_mult=0.)}))
max_epochs = 40
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True)
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs,
                 val_interval=max_epochs)
# SPD's signals for every method (distance to the pretrained weights; for
# AdamSPD also the fraction of tensors projected), once per epoch (5 iters)
custom_hooks = [dict(type='SPDMonitorHook', interval=5, module_interval=5)]
