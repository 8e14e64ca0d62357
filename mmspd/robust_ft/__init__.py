"""Robust fine-tuning beyond one optimizer: WiSE-FT weight interpolation,
and one report across many runs (methods x strengths x seeds).

Modules: ``pretrained`` (the pretrained weights exactly as a config loads
them), ``checkpoints`` (a fine-tuned checkpoint checked against its
config's model), ``wise_ft`` (interpolate and test each alpha),
``zero_shot`` (test a config's model as it initialises it: the zero-shot
row),
``results`` (the result files of runs on disk), ``report`` (group, select
on ID validation, mean +- std, tables and files), ``plots`` (ID-vs-OOD
figures). Imported by the tools in ``tools/analysis_tools/`` and by the
demo; ``import mmspd`` does not import it.
"""
