# Test on ImageNet-C as well: configs/imagenet_spd.py's test run (ImageNet val
# + V2, -Sketch, -A, -R) plus the 15 ImageNet-C corruptions x 5 severities
# (Hendrycks & Dietterich, ICLR 2019) in the release's folder layout:
#   data/imagenet-c/<corruption>/<severity>/<wnid>/*.JPEG
# One run, 1 + 4 + 75 evaluations; besides the table of the five sets it
# logs (and writes to robustness.json) a corruption x severity table, P / mPC
# / rPC and ImageNet-C's mCE and relative mCE (top-1 errors normalised by
# AlexNet's). See docs/robustness_benchmark.md.
#   python tools/test.py configs/imagenet_spd_imagenet-c.py CHECKPOINT
# The test part of imagenet_{spd,adamw,l2sp}.py is the same, so a checkpoint
# of any of them is tested this way. Fewer sets (no mCE then, only P / mPC /
# rPC over them): --cfg-options test_cfg.corruption_sweep.corruptions=noise
# or test_cfg.corruption_sweep.severities='[1,3,5]'.
_base_ = './imagenet_spd.py'

test_cfg = dict(
    corruption_sweep=dict(
        corruptions='benchmark',
        severities=(1, 2, 3, 4, 5),
        # one ImageNetC data set per pair, replacing the ID dataset config;
        # the images are 224x224 crops already (the test pipeline keeps them)
        dataset=dict(
            _delete_=True,
            type='ImageNetC',
            data_root='data/imagenet-c',
            corruption='{corruption}',
            severity='{severity}',
            pipeline=_base_.test_pipeline)))
