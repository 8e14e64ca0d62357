# LP-FT, stage 2 with AdamSPD: CLIP ViT-B/16 on DomainNet real (ID) ->
# sketch, painting, infograph, clipart (OOD), starting from the linear
# probe's head (stage 1: configs/domainnet_lpft_probe.py):
#   bash tools/dist_train.sh configs/domainnet_lpft_spd.py 8 --cfg-options \
#     model.head.init_cfg.checkpoint=work_dirs/domainnet_lpft_probe/best_accuracy_top1_epoch_N.pth
#
# Same as configs/domainnet_spd.py except where the head starts:
# - backbone: the pretrained CLIP weights, read by the base config's
#   init_cfg from checkpoints/clip-vit-base-p16_openai.pth, NOT the probe
#   checkpoint's copy of them; so SPD's anchors are the pretrained backbone
#   (captured at the first step, after init_weights);
# - head: the probe's head (the keys head.* of the probe checkpoint),
#   loaded by the head's own init_cfg;
# - head rule, explicit: decay_mult=0 and anchor='zero' (inherited from
#   domainnet_spd.py): no SPD on the head, nothing stored for it, plain
#   Adam. To pull the head toward its probed value instead, set
#   custom_keys={'head': dict(decay_mult=1., anchor='init')}.
_base_ = './domainnet_spd.py'

probe_checkpoint = 'work_dirs/domainnet_lpft_probe/probe.pth'  # override
model = dict(head=dict(init_cfg=dict(
    type='Pretrained', checkpoint=probe_checkpoint, prefix='head')))
