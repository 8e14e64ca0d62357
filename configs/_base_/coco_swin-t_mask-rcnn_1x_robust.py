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
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
           './swin-t_in1k_pretrained.py']
custom_imports = dict(imports=['mmspd', 'mmspd.detection'],
                      allow_failed_imports=False)

# The Swin-T file and the strict pretrained-loading check (what may differ
# between the classifier's file and mmdet's backbone):
# ./swin-t_in1k_pretrained.py.
model = dict(
    backbone=dict(
        convert_weights=False,
        init_cfg=dict(type='Pretrained',
                      checkpoint={{_base_.swin_t_checkpoint}})))
custom_hooks = [dict(type='StrictLoadingHook'),
                dict(type='ClassCountCheckHook')]

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
