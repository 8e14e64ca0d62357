# LP-FT, stage 2 with AdamW (the LP-FT paper's setting): CLIP ViT-B/16 on
# DomainNet real (ID) -> sketch, painting, infograph, clipart (OOD),
# starting from the linear probe's head (stage 1:
# configs/domainnet_lpft_probe.py):
#   bash tools/dist_train.sh configs/domainnet_lpft_adamw.py 8 --cfg-options \
#     model.head.init_cfg.checkpoint=work_dirs/domainnet_lpft_probe/best_accuracy_top1_epoch_N.pth
#
# Same as configs/domainnet_adamw.py except where the head starts:
# - backbone: the pretrained CLIP weights, read by the base config's
#   init_cfg, not the probe checkpoint's copy of them (SPDMonitorHook's
#   reference, the "anchor" AdamW has none of, is the pretrained backbone);
# - head: the probe's head (keys head.* of the probe checkpoint), by the
#   head's own init_cfg;
# - head rule, explicit: as domainnet_adamw.py, decoupled weight decay 0.1
#   toward 0 on the head's weight, none on its bias.
_base_ = './domainnet_adamw.py'

probe_checkpoint = 'work_dirs/domainnet_lpft_probe/probe.pth'  # override
model = dict(head=dict(init_cfg=dict(
    type='Pretrained', checkpoint=probe_checkpoint, prefix='head')))
