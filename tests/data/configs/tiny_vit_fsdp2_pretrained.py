# tiny_vit_fsdp2.py with its backbone read from a checkpoint by init_cfg
# (Pretrained; the tests write the file and set its path), a randomly
# initialised head, and stochastic depth (random draws in every iteration).
_base_ = ['./tiny_vit_fsdp2.py']

model = dict(
    backbone=dict(drop_path_rate=0.1,
                  init_cfg=dict(type='Pretrained',
                                checkpoint='backbone.pth')),
    head=dict(init_cfg=dict(type='Normal', layer='Linear', std=0.1)))
