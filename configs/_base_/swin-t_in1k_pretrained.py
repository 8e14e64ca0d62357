# The ImageNet-1k Swin-T file (OpenMMLab's layout) that the segmentation and
# detection configs start from, and what StrictLoadingHook
# (mmspd/engine/strict_loading.py) lets differ between that classifier's
# file and mmseg's / mmdet's Swin backbone: the four output norms
# norm0..norm3 exist only in the dense-prediction backbone (they start at
# LayerNorm's ones/zeros), and the classifier's final norm and the shifted
# blocks' attention masks (a buffer the backbones recompute) are not used.
# Everything else must match: before the first step every backbone tensor
# must hold the file's value and every tensor of the file must be used; a
# load_from / test checkpoint must match the model exactly. Opt-out:
# --cfg-options strict_loading.pretrained=False (or load_from=False), or
# more patterns in the *_ok lists.
#
# A local copy works too: --cfg-options model.backbone.init_cfg.checkpoint=PATH
swin_t_checkpoint = ('https://download.openmmlab.com/mmsegmentation/v0.5/'
                     'pretrain/swin/'
                     'swin_tiny_patch4_window7_224_20220317-1cdeb081.pth')
strict_loading = dict(
    pretrained=True,
    load_from=True,
    pretrained_missing_ok=['backbone.norm[0-3].weight',
                           'backbone.norm[0-3].bias'],
    pretrained_unexpected_ok=['backbone.norm.weight', 'backbone.norm.bias',
                              'backbone.stages.*.attn_mask'])
