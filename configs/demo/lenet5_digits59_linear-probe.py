# Reference for the demo, not a compared method: only the new head is
# trained (backbone lr 0), so it shows how far the pretrained features get
# on digits 5-9 without adaptation.
#   python tools/train.py configs/demo/lenet5_digits59_linear-probe.py
_base_ = ['./_base_/lenet5_digits59_finetune.py']

optim_wrapper = dict(
    optimizer=dict(type='Adam', weight_decay=0.),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.)}))
