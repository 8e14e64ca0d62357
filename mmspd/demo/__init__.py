"""``make demo``: what SPD is for, on a laptop CPU, offline.

A small LeNet-5 is pretrained on digits 0-4 under heavy augmentation, then
fine-tuned on digits 5-9 (new classes, few clean images) with AdamW, L2-SP
and AdamSPD through mmengine's Runner and the configs in ``configs/demo/``;
each method's strength is picked by ID validation accuracy, and the chosen
runs are tested on the ID test set and on shifted copies of it (OOD) with
:class:`mmspd.engine.RobustTestLoop`. The linear probes (a reference row)
are also LP-FT's first stage, and the selected AdamW and AdamSPD runs get a
WiSE-FT sweep.

Modules: ``data`` (the bundled digits on disk), ``transforms`` (the noise
transform, registered into mmpretrain), ``protocol`` (methods, grids,
seeds), ``stages`` (cached stage outputs), ``runs`` (one Runner per stage),
``pipeline`` (the whole demo; its table and figure come from
:mod:`mmspd.robust_ft.report` and :mod:`mmspd.robust_ft.plots`). This
package is imported by the demo only: it needs mmpretrain and
scikit-learn, which ``import mmspd`` never does.
"""
