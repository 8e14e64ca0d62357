# Demo fine-tuning with Adam + L2-SP: weight_decay / 2 * |p - a|^2 toward
# the pretrained weights a.
# `make demo` picks weight_decay from a grid by ID validation accuracy
# (projects/spd_demo/protocol.py); the value here is the default for a
# single run:
#   python tools/train.py configs/demo/lenet5_digits59_l2sp.py
_base_ = ['./_base_/lenet5_digits59_finetune.py']

optim_wrapper = dict(optimizer=dict(type='AdamL2SP', weight_decay=0.1))
