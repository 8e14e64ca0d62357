# configs/imagenet_adamw.py with the head initialised from CLIP's zero-shot
# classifier instead of zeros (backbone, data, schedule, optimizer unchanged).
# Make the head once from OpenAI's CLIP file (text tower included):
#   python tools/model_converters/clip_zero_shot_head.py ViT-B-16.pt \
#     checkpoints/clip-vit-base-p16_openai_zeroshot-head_imagenet.pth \
#     --dataset imagenet --config configs/imagenet_adamw_zeroshot-head.py \
#     --model-out checkpoints/clip-vit-base-p16_openai_zeroshot-model_imagenet.pth
# (W = exp(logit_scale) * T @ visual.proj^T on the ln_post class token the
# backbone outputs; mmspd/classification/zero_shot.py). The head's init_cfg
# loads it; StrictLoadingHook checks it like the backbone (exact keys,
# shapes and values). Zero-shot row (no training, no checkpoint: the CLIP
# backbone and this head as their init_cfg loads them, tested on every set;
# in work_dirs/<config>/zero_shot, marked as zero-shot for the report):
#   python tools/test.py configs/imagenet_adamw_zeroshot-head.py --zero-shot
# (the --model-out file tested as a CHECKPOINT gives the same numbers)
# WiSE-FT from this config interpolates the head too: alpha 0 is the
# zero-shot model.
# Head rule: as configs/imagenet_adamw.py (decoupled weight decay 0.1 toward 0
# on the head's weight, none on its bias); AdamW has no anchor.
_base_ = './imagenet_adamw.py'

zero_shot_head = 'checkpoints/clip-vit-base-p16_openai_zeroshot-head_imagenet.pth'
model = dict(head=dict(init_cfg=dict(
    type='Pretrained', checkpoint=zero_shot_head, prefix='head')))
