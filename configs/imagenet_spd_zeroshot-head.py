# configs/imagenet_spd.py with the head initialised from CLIP's zero-shot
# classifier instead of zeros (backbone, data, schedule, optimizer unchanged).
# Make the head once from OpenAI's CLIP file (text tower included):
#   python tools/model_converters/clip_zero_shot_head.py ViT-B-16.pt \
#     checkpoints/clip-vit-base-p16_openai_zeroshot-head_imagenet.pth \
#     --dataset imagenet --config configs/imagenet_spd_zeroshot-head.py \
#     --model-out checkpoints/clip-vit-base-p16_openai_zeroshot-model_imagenet.pth
# (W = exp(logit_scale) * T @ visual.proj^T on the ln_post class token the
# backbone outputs; mmspd/classification/zero_shot.py). The head's init_cfg
# loads it; StrictLoadingHook checks it like the backbone (exact keys,
# shapes and values). Zero-shot row (no training, no checkpoint: the CLIP
# backbone and this head as their init_cfg loads them, tested on every set;
# in work_dirs/<config>/zero_shot, marked as zero-shot for the report):
#   python tools/test.py configs/imagenet_spd_zeroshot-head.py --zero-shot
# (the --model-out file tested as a CHECKPOINT gives the same numbers)
# WiSE-FT from this config interpolates the head too: alpha 0 is the
# zero-shot model.
# Head rule (decision): the head now has a pretrained value, so it is
# anchored there like every backbone tensor (decay_mult=1, anchor='init':
# the zero-shot weights, captured at the first step). The text classifier
# is part of the pretrained model whose robustness the method keeps; a
# head free to drift would undo it. Public sources do not show the
# paper's choice (GT-RIPL/Selective-Projection-Decay's README example
# anchors every trainable tensor; docs/reproduce.md). Zero-initialised
# head, no anchor: configs/imagenet_spd.py.
_base_ = './imagenet_spd.py'

zero_shot_head = 'checkpoints/clip-vit-base-p16_openai_zeroshot-head_imagenet.pth'
model = dict(head=dict(init_cfg=dict(
    type='Pretrained', checkpoint=zero_shot_head, prefix='head')))
optim_wrapper = dict(paramwise_cfg=dict(
    custom_keys={'head': dict(decay_mult=1., anchor='init')}))
