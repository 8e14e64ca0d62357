# PEFT with SPD: LoRA adapters on CLIP ViT-B/16, trained with AdamSPD,
# DomainNet real (ID) -> sketch, painting, infograph, clipart (OOD).
#   bash tools/dist_train.sh configs/domainnet_lora_spd.py 8
#   python tools/test.py configs/domainnet_lora_spd.py CHECKPOINT
#
# - Model: mmpretrain's LoRAModel wraps the CLIP ViT-B/16 of
#   configs/_base_/domainnet_clip_vit-b16.py (its init_cfg loads the
#   pretrained CLIP weights when the model is built, so testing needs the
#   CLIP file too) and adds rank-16 adapters (alpha 16, dropout 0.1) to
#   every attention block's qkv and output projection. LoRAModel freezes
#   everything else in the backbone (requires_grad=False: no gradient, no
#   optimizer state, no anchor; the weights stay the CLIP ones) and saves
#   only the adapters in checkpoints (plus the head).
# - AdamSPD, the paper's PEFT mode: anchor='zero' on the LoRA tensors
#   (custom key 'lora_'): SPD decays |dW| toward 0 and stores no anchor.
#   lambda (weight_decay) 1.0 as for full fine-tuning; cross-validate it.
# - Head rule, explicit: the new head gets no SPD (decay_mult=0) and no
#   anchor (anchor='zero'): plain Adam, as in configs/domainnet_spd.py.
# - lr 5e-4: adapters start at zero and need a larger lr than full
#   fine-tuning's 2e-5 (a common LoRA value, not the paper's: cross-validate
#   it, with the same grid for configs/domainnet_lora_adamw.py).
_base_ = './_base_/domainnet_clip_vit-b16.py'

lora = dict(
    type='LoRAModel',
    module=_base_.model.backbone,
    alpha=16,
    rank=16,
    drop_rate=0.1,
    targets=[dict(type='qkv'), dict(type='attn.proj')])
model = dict(backbone=dict(_delete_=True, **lora))
# StrictLoadingHook (configs/_base_/clip_vit-b16_finetune.py) compares the
# ViT with the CLIP file after the model is built; LoRAModel has by then
# renamed each adapted layer's weights (qkv.weight -> qkv.original_layer.
# weight) and added the adapters, so these names differ on purpose. The
# adapted weights themselves are the CLIP ones (tests/test_robust_ft/
# test_lora_configs.py checks them before and after training).
strict_loading = dict(
    pretrained_missing_ok=['backbone.module.*.original_layer.*',
                           'backbone.module.*.lora_down.weight',
                           'backbone.module.*.lora_up.weight'],
    pretrained_unexpected_ok=['backbone.module.*.attn.qkv.*',
                              'backbone.module.*.attn.proj.*'])

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='SPDOptimWrapperConstructor',
    optimizer=dict(
        type='AdamSPD', lr=5e-4, betas=(0.9, 0.999), weight_decay=1.0),
    paramwise_cfg=dict(custom_keys={
        'lora_': dict(anchor='zero'),
        'head': dict(decay_mult=0., anchor='zero'),
    }),
    clip_grad=dict(max_norm=1.0))
