# PEFT baseline: LoRA adapters on CLIP ViT-B/16 trained with AdamW,
# DomainNet real (ID) -> sketch, painting, infograph, clipart (OOD).
#   bash tools/dist_train.sh configs/domainnet_lora_adamw.py 8
#
# Same model, data, schedule and lr as configs/domainnet_lora_spd.py; only
# the optimizer differs: AdamW, decoupled weight decay 0.1 toward 0 on the
# LoRA tensors and on the head's weight (none on the head's bias), as in
# configs/domainnet_adamw.py. The frozen backbone is untouched (no
# gradient, no state).
_base_ = './domainnet_lora_spd.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=5e-4, betas=(0.9, 0.999), weight_decay=0.1),
    paramwise_cfg=dict(bias_decay_mult=0.),
    clip_grad=dict(max_norm=1.0))
