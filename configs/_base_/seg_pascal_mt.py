# Swin-T UperNet on the semantic segmentation task of the multi-task
# PASCAL-Context release (PASCAL_MT: 21 classes, 0 = background, 255 =
# ignore; 4,998 train / 5,105 val images), the protocol of the SPD paper's
# PASCAL-Context numbers. Same model, schedule and corruption OOD sets as
# the PASCAL-Context-59 configs, same 480x480 crops, 4 images per GPU.
#
# data/PASCAL_MT/
#   JPEGImages/<id>.jpg
#   semseg/VOC12/<id>.png  or else  semseg/pascal-context/<id>.png
#   ImageSets/Context/{train,val}.txt
_base_ = ['./seg_swin-t_upernet_40k_robust.py']

crop_size = (480, 480)
num_classes = 21
model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))

dataset_type = 'PascalMTDataset'
data_root = 'data/PASCAL_MT/'
img_scale = (520, 520)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    # labels are loaded after Resize: metrics are on the original label maps
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='JPEGImages', seg_map_path='semseg'),
        ann_file='ImageSets/Context/train.txt',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='JPEGImages', seg_map_path='semseg'),
        ann_file='ImageSets/Context/val.txt',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
