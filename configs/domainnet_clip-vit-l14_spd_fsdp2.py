# CLIP ViT-L/14 fine-tuned with AdamSPD, sharded with FSDP2:
# DomainNet real (ID) -> sketch, painting, infograph, clipart (OOD).
# The recipe of configs/domainnet_spd.py (augmentation, schedule, data, test
# sets, AdamSPD lr 2e-5 and lambda 1.0, no SPD on the new head) on the
# ViT-L/14 image encoder; lr and lambda are ViT-B/16's, not tuned for L/14.
#
# GPUs and batch: 8 GPUs x 32 images = 256 total (auto_scale_lr scales the
# lr linearly from 256 for other totals):
#   bash tools/dist_train.sh configs/domainnet_clip-vit-l14_spd_fsdp2.py 8
# Test (ID + OOD sets; CHECKPOINT is a sharded checkpoint directory such as
# work_dirs/<name>/best_accuracy_top1_epoch_N.pth, or a file):
#   bash tools/dist_test.sh configs/domainnet_clip-vit-l14_spd_fsdp2.py \
#     CHECKPOINT 8
#
# Sharding (mmspd's FSDP2Strategy on mmengine's FlexibleRunner): each of the
# 24 TransformerEncoderLayers is an FSDP unit; parameters, gradients and
# optimizer state (Adam moments and AdamSPD's anchors) are sharded over the
# GPUs and stay float32; forward/backward compute and the parameter
# all-gathers run in bfloat16, gradients are reduce-scattered in float32;
# every layer's activations are recomputed in backward. Checkpoints are
# directories of per-GPU shards (docs/sharded_training.md), resumable on
# any number of GPUs.
#
# Expected memory per GPU: NOT MEASURED (no GPU run of this config yet).
# Estimate, 8 GPUs, batch 32 per GPU, 224 px (257 tokens, width 1024):
# - sharded state: 303.5M parameters x 4 bytes x 5 copies (weights,
#   gradients, Adam's two moments, anchors) / 8 GPUs = 0.76 GB;
# - gathered bf16 parameters of the 1-2 layers in flight: ~0.05 GB;
# - activations with checkpointing: the 24 layer inputs in bf16
#   (24 x 32 x 257 x 1024 x 2 bytes = 0.4 GB) plus one layer's recomputed
#   activations (~34 + 5 x heads x tokens / width bytes per token and
#   width element, Korthikanti et al. 2022: ~0.45 GB);
# so about 2 GB plus the CUDA context and allocator slack (1-2 GB): 3-4 GB.
# Without activation checkpointing the activations alone are ~11 GB.
# To measure: run 20 iterations and read the log's `memory` (MB, the
# allocator's max_memory_allocated), e.g.
#   bash tools/dist_train.sh configs/domainnet_clip-vit-l14_spd_fsdp2.py 8 \
#     --cfg-options train_cfg.max_epochs=1 train_dataloader.dataset.split=\
#     train_10_percent_split
#
# Weights: OpenAI's CLIP ViT-L/14 image encoder (ViT-L-14.pt), converted
# once (the converter reads the sizes from the file):
#   python tools/model_converters/openai_clip_to_mmpretrain.py \
#     ViT-L-14.pt checkpoints/clip-vit-large-p14_openai.pth
_base_ = ['./domainnet_spd.py']

clip_checkpoint = 'checkpoints/clip-vit-large-p14_openai.pth'
model = dict(
    backbone=dict(
        arch='l',  # width 1024, 24 layers, 16 heads, MLP 4096: CLIP's L/14
        patch_size=14,
        img_size=224,
        init_cfg=dict(checkpoint=clip_checkpoint)),
    head=dict(in_channels=1024))

runner_type = 'FlexibleRunner'
strategy = dict(
    type='FSDP2Strategy',
    shard_modules=['TransformerEncoderLayer'],
    mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32'),
    activation_checkpointing=['TransformerEncoderLayer'])
