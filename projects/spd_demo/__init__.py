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
``pipeline`` (the whole demo, stage by stage), ``report`` (the results
JSON, table, markdown and CSV reports and figure, from
:mod:`mmspd.robust_ft.report` and :mod:`mmspd.robust_ft.plots`).

An example built on mmspd, not part of it: it lives in the repository's
``projects/`` folder, outside the ``mmspd`` package (the wheel does not ship
it), and is imported as ``projects.spd_demo`` with the repository root on
``sys.path``, which ``tools/demo.py``, ``tools/train.py``, ``tools/test.py``
and the tests see to. It needs mmpretrain and scikit-learn, which ``import
mmspd`` never does.
"""
