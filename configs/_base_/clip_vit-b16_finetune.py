# Shared by configs/domainnet_*.py and configs/imagenet_*.py: the CLIP
# ViT-B/16 fine-tuning recipe of the SPD paper, independent of the data set
# and of the optimizer.
#
# - Model: mmpretrain's CLIP ViT-B/16 classifier
#   (mmpretrain::clip/vit-base-p16_pt-64xb64_in1k.py: pre-norm ViT-B/16 and a
#   linear head on the class token) with OpenAI CLIP's QuickGELU, no dropout,
#   drop-path 0.2, label smoothing 0.1, Mixup 0.8 / CutMix 1.0 (one of the two
#   per batch, as DeiT). Every LayerNorm has CLIP's eps 1e-5 (mmpretrain's
#   ViT default is 1e-6, which moves the class-token feature by ~7e-4
#   relative: tests/test_classification/test_clip_reference.py).
# - Weights: the backbone loads the *pre-trained* OpenAI CLIP image encoder
#   through init_cfg; these weights are the anchors of AdamSPD / AdamL2SP
#   (captured at the first step, after init_weights). Make the file once
#   from OpenAI's ViT-B-16.pt (a path, or its URL: OPENAI_VIT_B16_URL in
#   mmspd/classification/clip_checkpoint.py, also in docs/reproduce.md):
#     python tools/model_converters/openai_clip_to_mmpretrain.py \
#       ViT-B-16.pt checkpoints/clip-vit-base-p16_openai.pth
#   (mmpretrain's own CLIP ViT-B/16 checkpoints are already fine-tuned on
#   ImageNet-1k: not the paper's starting point.)
# - Head: new (zero-initialised 768 -> num_classes linear layer). The
#   optimizer configs give it no SPD / L2-SP pull: there is no pretrained
#   value to return to.
# - Data: CLIP's normalisation; DeiT's training augmentation (random resized
#   crop, flip, RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25);
#   CLIP's test transform (short side 224, bicubic, centre crop 224).
_base_ = ['mmpretrain::clip/vit-base-p16_pt-64xb64_in1k.py']
custom_imports = dict(imports=['mmspd', 'mmspd.classification'],
                      allow_failed_imports=False)

# --cfg-options model.backbone.init_cfg.checkpoint=PATH points elsewhere.
clip_checkpoint = 'checkpoints/clip-vit-base-p16_openai.pth'
model = dict(
    backbone=dict(
        drop_rate=0.,
        drop_path_rate=0.2,
        layer_cfgs=dict(act_cfg=dict(type='QuickGELU')),
        # OpenAI CLIP's nn.LayerNorm default; used by pre_norm (ln_pre),
        # every block's ln1/ln2 (ln_1/ln_2) and the final ln1 (ln_post)
        norm_cfg=dict(type='LN', eps=1e-5),
        # a dict, not a list: mmpretrain's ViT then keeps the loaded
        # position embedding instead of re-initialising it
        init_cfg=dict(_delete_=True, type='Pretrained',
                      checkpoint=clip_checkpoint, prefix='backbone')),
    head=dict(
        loss=dict(_delete_=True, type='LabelSmoothLoss',
                  label_smooth_val=0.1, mode='original')),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))

# OpenAI CLIP's mean and std (RGB, 0-255)
clip_mean = [0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255]
clip_std = [0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255]
data_preprocessor = dict(mean=clip_mean, std=clip_std, to_rgb=True)
bgr_mean = clip_mean[::-1]
bgr_std = clip_std[::-1]

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2,
         total_level=10, magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[round(x) for x in bgr_mean],
                      interpolation='bicubic')),
    dict(type='RandomErasing', erase_prob=0.25, mode='rand',
         min_area_ratio=0.02, max_area_ratio=1 / 3, fill_color=bgr_mean,
         fill_std=bgr_std),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=224, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

# Telemetry of the distance to the anchors (spd/* scalars, at the logger's
# interval) for every optimizer, so the three methods can be plotted side by
# side (tools/analysis_tools/plot_spd.py).
custom_hooks = [dict(type='SPDMonitorHook'), dict(type='StrictLoadingHook')]
# StrictLoadingHook (mmspd/engine/strict_loading.py): before the first step
# the backbone must hold exactly the tensors of the CLIP file (none missing,
# none unused, same shapes and values), and a load_from / test checkpoint
# exactly the model's; otherwise one error lists the differences. Opt-out
# for an intentional partial load: patterns of model keys in
# strict_loading.pretrained_missing_ok / pretrained_unexpected_ok (or
# load_from_missing_ok / load_from_unexpected_ok), or
# --cfg-options strict_loading.pretrained=False (load_from=False).
strict_loading = dict(pretrained=True, load_from=True)
