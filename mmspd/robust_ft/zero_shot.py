"""The zero-shot row: a config's model tested exactly as the config
initialises it, without any training or checkpoint.

``tools/test.py CONFIG --zero-shot`` runs :func:`run_zero_shot_test`. For a
``*_zeroshot-head.py`` config that model is CLIP: the backbone from the
converted CLIP file and the head from CLIP's zero-shot classifier (both
loaded by their ``init_cfg``). The weights are those of
:func:`~mmspd.robust_ft.pretrained.load_pretrained` (``init_weights()``,
then ``load_from``): the values SPD and L2-SP anchor at, and WiSE-FT's
``alpha = 0`` end, so the zero-shot numbers are those of WiSE-FT at
``alpha = 0`` bit for bit. Every tensor of the model must get its value
from those sources; a config with a new head (zero or random
initialisation) is refused, naming the tensors, since its "zero-shot"
numbers would be those of an untrained head.

The run is tested by the config's own test loop (``RobustTestLoop``: the ID
set and every OOD set, ``robustness.json``) and writes ``zero_shot.json``
next to that file::

    {"model": "zero-shot", "config": ..., "pretrained": [sources],
     "tensors": N, "results": "robustness.json", "metrics": {...}}

which marks the run as the zero-shot model for
:mod:`mmspd.robust_ft.results` (the report's zero-shot row and the start
of the WiSE-FT curves of zero-shot-head configs).
"""
import json
import numbers
import os.path as osp

from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.logging import print_log

from mmspd.engine.strict_loading import (check_checkpoint_loaded,
                                         check_pretrained_loaded,
                                         strict_loading_settings)
from .pretrained import PretrainedWeights, describe_keys, load_pretrained
from .results import ZERO_SHOT, ZERO_SHOT_FILE
from .wise_ft import runner_with_weights

#: The folder of the zero-shot run under the config's work dir when
#: ``tools/test.py --zero-shot`` gets no ``--work-dir``.
ZERO_SHOT_DIR = 'zero_shot'


def zero_shot_weights(cfg: Config) -> PretrainedWeights:
    """The weights of ``cfg``'s model as the config initialises it.

    Raises ``ValueError`` naming the tensors that no pretrained source
    (``init_cfg`` ``Pretrained`` file, ``load_from``) provides, and the
    errors of :func:`~mmspd.robust_ft.pretrained.load_pretrained` for a
    file that lacks keys of its module or holds other shapes.
    """
    pretrained = load_pretrained(cfg)
    untouched = sorted(set(pretrained.state) - pretrained.keys)
    if untouched:
        sources = '; '.join(pretrained.sources) or 'none'
        raise ValueError(
            f'--zero-shot tests the model as the config {cfg.filename!r} '
            f'initialises it, but {len(untouched)} of its tensors get no '
            f'value from its pretrained sources ({sources}): '
            f'{describe_keys(untouched)}; they would be tested at their '
            f'initial (random or zero) values. Use a config that loads '
            f'them too (e.g. a *_zeroshot-head.py config: CLIP backbone and '
            f'CLIP\'s zero-shot head) or test a CHECKPOINT')
    return pretrained


def run_zero_shot_test(cfg: Config) -> dict:
    """Test :func:`zero_shot_weights` with the config's test loop in a
    Runner of ``cfg`` (its work dir, launcher and hooks; ``load_from`` is
    part of the weights, not loaded again), after checking them as
    training's ``StrictLoadingHook`` does before the first step: against
    the ``init_cfg`` files (unless ``strict_loading.pretrained`` is
    False), or against ``load_from`` when the config has one. Writes
    ``zero_shot.json`` into the run's log dir; returns the test metrics.

    Raises ``ValueError`` as :func:`zero_shot_weights` and
    ``LoadMismatchError`` when the loaded model does not hold exactly the
    pretrained files' tensors (``load_from``'s, when the config has one),
    both before any test iteration."""
    pretrained = zero_shot_weights(cfg)
    print_log(f'Zero-shot test of {cfg.filename}: {len(pretrained.state)} '
              f'tensors, all from the pretrained sources '
              f'({"; ".join(pretrained.sources)}); no checkpoint, no '
              f'training', logger='current')
    runner = runner_with_weights(cfg, pretrained.state)
    settings = strict_loading_settings(cfg)
    if cfg.get('load_from'):  # as StrictLoadingHook before training
        if settings['load_from']:
            check_checkpoint_loaded(runner.model, cfg.load_from,
                                    settings['load_from_missing_ok'],
                                    settings['load_from_unexpected_ok'])
    elif settings['pretrained']:
        check_pretrained_loaded(runner.model,
                                settings['pretrained_missing_ok'],
                                settings['pretrained_unexpected_ok'])
    metrics = runner.test()
    if is_main_process():
        out_file = getattr(runner.test_loop, 'out_file', None)
        path = osp.join(runner.log_dir, ZERO_SHOT_FILE)
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(dict(model=ZERO_SHOT, config=cfg.filename,
                           pretrained=pretrained.sources,
                           tensors=len(pretrained.state), results=out_file,
                           metrics={k: float(v) for k, v in metrics.items()
                                    if isinstance(v, numbers.Real)}),
                      f, indent=2)
        print_log(f'Zero-shot run marked in {path}', logger='current')
    return metrics
