# Shared by configs/coco_{adamw,l2sp,spd}.py: everything but the optimizer.
#
# - Model: mmdet's Mask R-CNN Swin-T FPN 1x (mmdet::swin/
#   mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py: embed 96, depths 2-2-6-2, window
#   7, drop path 0.2, FPN on the four stages, 80 COCO classes), its
#   pipeline (1333x800, keep ratio, flip) and schedule (12 epochs, 1k
#   iterations of linear warm-up, lr x0.1 after epochs 8 and 11).
# - Backbone: the ImageNet-1k Swin-T file of the segmentation configs
#   (OpenMMLab's layout, hence convert_weights=False; mmdet's own config
#   reads Microsoft's file and converts it), loaded by init_cfg. Those
#   loaded weights are the anchors of AdamSPD / AdamL2SP (captured at the
#   first step, after init_weights).
# - Batch: 2 images per GPU, 8 GPUs; auto_scale_lr scales the lr from a
#   total batch of 16 to the actual one (linear scaling rule).
# - Data: COCO 2017 under data/coco/ (annotations/instances_{train,val}2017
#   .json, train2017/, val2017/), read by CheckedCocoDataset (mmdet's
#   CocoDataset plus clear errors for a missing annotation file, a listed
#   image that is absent, categories other than the classes), and
#   ClassCountCheckHook (the heads' num_classes equals the data set's class
#   count): mmspd/detection/.
# - Test: RobustTestLoop on clean COCO val2017 and on val2017 under each of
#   the 15 ImageNet-C benchmark corruptions at severities 1-5 (Michaelis et
#   al. 2019's protocol: P = clean AP, mPC = mean AP over the 75 corrupted
#   sets, rPC = mPC / P), box and mask AP from mmdet's CocoMetric.
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'
custom_imports = dict(imports=['mmspd', 'mmspd.detection'],
                      allow_failed_imports=False)

# A local copy works too: --cfg-options model.backbone.init_cfg.checkpoint=PATH
swin_t_checkpoint = ('https://download.openmmlab.com/mmsegmentation/v0.5/'
                     'pretrain/swin/'
                     'swin_tiny_patch4_window7_224_20220317-1cdeb081.pth')
model = dict(
    backbone=dict(
        convert_weights=False,
        init_cfg=dict(type='Pretrained', checkpoint=swin_t_checkpoint)))

# StrictLoadingHook (mmspd/engine/strict_loading.py): before the first step
# every backbone tensor must hold the checkpoint's value, and every tensor
# of the checkpoint must be used, except the known differences between the
# ImageNet classifier's file and mmdet's backbone: the four output norms
# norm0..norm3 exist only in the detection backbone (they start at
# LayerNorm's ones/zeros), and the classifier's final norm and the shifted
# blocks' attention masks (mmdet computes them in the forward pass) are not
# used. A load_from / test checkpoint must match the model exactly.
# Opt-out: --cfg-options strict_loading.pretrained=False (or
# load_from=False), or more patterns in the *_ok lists.
custom_hooks = [dict(type='StrictLoadingHook'),
                dict(type='ClassCountCheckHook')]
strict_loading = dict(
    pretrained=True,
    load_from=True,
    pretrained_missing_ok=['backbone.norm[0-3].weight',
                           'backbone.norm[0-3].bias'],
    pretrained_unexpected_ok=['backbone.norm.weight', 'backbone.norm.bias',
                              'backbone.stages.*.attn_mask'])

dataset_type = 'CheckedCocoDataset'
train_dataloader = dict(dataset=dict(type=dataset_type))
val_dataloader = dict(dataset=dict(type=dataset_type))
test_dataloader = dict(dataset=dict(type=dataset_type))

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1,
                    save_best='coco/bbox_mAP', rule='greater'))
auto_scale_lr = dict(enable=True, base_batch_size=16)

# OOD sets: clean val2017 under each corruption and severity, corrupted
# right after loading (boxes and masks untouched), seeded per image file
# name: the same images in every run. The sets are named
# '<corruption>-<severity>'. 'benchmark' is the 15 ImageNet-C corruptions,
# 75 sets: with the clean set, 76 evaluations of the 5k val images. A
# cheaper sweep: --cfg-options test_cfg.corruption_sweep.corruptions=holdout
# (4 corruptions, 20 sets) or test_cfg.corruption_sweep.severities=[3].
test_cfg = dict(
    _delete_=True,
    type='RobustTestLoop',
    id_name='clean',
    corruption_sweep=dict(
        corruptions='benchmark',
        severities=(1, 2, 3, 4, 5),
        transform=dict(type='ImageCorruption'),
        insert_after='LoadImageFromFile'))
