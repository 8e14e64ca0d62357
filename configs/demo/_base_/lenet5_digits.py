# What every demo config shares: mmpretrain's LeNet-5 features (120-d; the
# subclass in projects/spd_demo/models.py only adds init_cfg) + a linear
# head, on 32x32 greyscale digits stored in mmpretrain's CustomDataset layout
# (written by `make demo`, see projects/spd_demo/data.py), and the runtime.
# The backbone and the noise transform come from the demo project
# (projects/spd_demo, not part of the mmspd package): run from a source
# checkout, where tools/train.py, tools/test.py and tools/demo.py put the
# repository root on sys.path.
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmspd', 'projects.spd_demo.models',
                               'projects.spd_demo.transforms'],
                      allow_failed_imports=False)

num_classes = 5

model = dict(
    type='ImageClassifier',
    backbone=dict(type='PretrainableLeNet5'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=num_classes,
              in_channels=120, loss=dict(type='CrossEntropyLoss')))
data_preprocessor = dict(
    num_classes=num_classes, mean=[127.5], std=[127.5], to_rgb=False)

val_evaluator = dict(type='Accuracy', topk=(1, ))

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=-1, save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'),
               mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
randomness = dict(seed=0, deterministic=False)
log_level = 'INFO'
load_from = None
resume = False
