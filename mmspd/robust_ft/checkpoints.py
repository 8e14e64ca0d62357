"""A fine-tuned checkpoint, checked against the model its config builds.

``tools/test.py`` loads a checkpoint with ``strict=False`` (mmengine's
default for ``load_from``): a checkpoint of another model loads partly and
the test silently scores random layers. Tools that compute *with* the
weights (WiSE-FT) first check the match with :func:`matching_state_dict`.
"""
from typing import Dict

import torch

from .pretrained import describe_keys, read_state_dict


def matching_state_dict(path: str, model_state: Dict[str, torch.Tensor],
                        what: str = 'checkpoint') -> Dict[str, torch.Tensor]:
    """The state dict of ``path``, which must hold exactly the keys of
    ``model_state`` with the same shapes.

    Raises ``ValueError`` naming the missing, unexpected and mis-shaped
    keys (``what`` names the file in the message).
    """
    state = read_state_dict(path)
    missing = [k for k in model_state if k not in state]
    unexpected = [k for k in state if k not in model_state]
    wrong = [f'{k} {tuple(state[k].shape)} vs {tuple(v.shape)}'
             for k, v in model_state.items()
             if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f'{len(missing)} missing key(s) '
                        f'({describe_keys(missing)})')
    if unexpected:
        problems.append(f'{len(unexpected)} unexpected key(s) '
                        f'({describe_keys(unexpected)})')
    if wrong:
        problems.append(f'{len(wrong)} tensor(s) of another shape, file vs '
                        f'model ({describe_keys(wrong)})')
    if problems:
        raise ValueError(f'The {what} {path!r} does not match the model of '
                         f'the config: ' + '; '.join(problems))
    return state
