# Swin-T UperNet on mmseg's PASCAL-Context-59 (59 classes, 480x480 crops,
# data/VOCdevkit/VOC2010: JPEGImages, SegmentationClassContext,
# ImageSets/SegmentationContext/{train,val}.txt), 4 images per GPU.
_base_ = [
    './seg_swin-t_upernet_40k_robust.py',
    'mmseg::_base_/datasets/pascal_context_59.py',
]
crop_size = (480, 480)
num_classes = 59
model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))

# mmseg's PascalContextDataset59 plus file checks when the data set is built
# (missing split file, image or label map; label map of the wrong mode or
# size): mmspd/segmentation/datasets.py
dataset_type = 'CheckedPascalContextDataset59'
train_dataloader = dict(dataset=dict(type=dataset_type))
val_dataloader = dict(dataset=dict(type=dataset_type))
test_dataloader = dict(dataset=dict(type=dataset_type))
