# Demo LP-FT, second stage: full fine-tuning with AdamW (as
# lenet5_digits59_adamw.py) that starts from the linear probe's head.
# Stage 1 is lenet5_digits59_linear-probe.py (only the new head trains; the
# backbone's lr is 0, so it stays the pretrained one). Two commands:
#   python tools/train.py configs/demo/lenet5_digits59_linear-probe.py \
#       --work-dir work_dirs/lpft_probe
#   python tools/train.py configs/demo/lenet5_digits59_lpft.py \
#       --cfg-options model.head.init_cfg.checkpoint=work_dirs/lpft_probe/epoch_40.pth
# (`make demo` chains them per seed.) What each part starts from:
# - backbone: the *pretrained* weights, read from the pretraining file by
#   the base config's init_cfg, not the probe checkpoint's copy of them, so
#   any anchor (SPD / L2-SP, SPDMonitorHook's reference) is the pretrained
#   backbone;
# - head: the probe's head, loaded by the head's own init_cfg (keys
#   head.fc.* of the probe checkpoint).
# Head rule: no weight decay on the head (decay_mult=0, as for every demo
# method); an anchored optimizer here would anchor the head at its probed
# value (the weights at the first step).
_base_ = ['./_base_/lenet5_digits59_finetune.py']

probe_checkpoint = 'work_dirs/demo/lpft_probe/epoch_40.pth'  # overridden
model = dict(head=dict(init_cfg=dict(
    type='Pretrained', checkpoint=probe_checkpoint, prefix='head')))
optim_wrapper = dict(optimizer=dict(type='AdamW', weight_decay=0.1))
