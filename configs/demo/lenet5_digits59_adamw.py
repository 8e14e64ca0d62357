# Demo fine-tuning with AdamW: decoupled weight decay toward 0.
# `make demo` picks weight_decay from a grid by ID validation accuracy
# (projects/spd_demo/protocol.py); the value here is the default for a
# single run:
#   python tools/train.py configs/demo/lenet5_digits59_adamw.py
_base_ = ['./_base_/lenet5_digits59_finetune.py']

optim_wrapper = dict(optimizer=dict(type='AdamW', weight_decay=0.1))
