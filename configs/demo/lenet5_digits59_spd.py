# Demo fine-tuning with AdamSPD: selective projection decay toward the
# pretrained weights, lambda = weight_decay.
# `make demo` picks weight_decay from a grid by ID validation accuracy
# (projects/spd_demo/protocol.py); the value here is the default for a
# single run:
#   python tools/train.py configs/demo/lenet5_digits59_spd.py
_base_ = ['./_base_/lenet5_digits59_finetune.py']

optim_wrapper = dict(optimizer=dict(type='AdamSPD', weight_decay=1.0))
