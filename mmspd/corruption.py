"""Deterministic ImageNet-C style corruptions of one image (pure numpy).

The corruptions are those of Hendrycks & Dietterich (ICLR 2019), as packaged
by ``imagecorruptions-imaug`` (module ``imagecorruptions``). That package
draws its randomness from numpy's *global* RNG (and, for ``impulse_noise``
and ``glass_blur``, from a fresh unseeded generator unless given a seed), so
the same image would be corrupted differently on every call and in every
data-loader worker. :func:`corrupt_image` makes a corruption a pure function
of ``(image, corruption, severity, seed)``: it seeds every source of
randomness from ``seed`` and restores numpy's global RNG state afterwards,
so it neither depends on nor disturbs anyone else's random numbers.

:data:`CORRUPTION_SETS` names groups of corruptions as MMDetection's
robustness benchmark does (``'benchmark'``: the 15 ImageNet-C ones,
``'holdout'``, ``'noise'``, ...); :func:`resolve_corruptions` and
:func:`resolve_severities` check a selection of them (``RobustTestLoop``'s
corruption sweep uses them).

The task transforms (``mmspd.segmentation.ImageCorruption`` and the
classification one) derive ``seed`` per image with :func:`seed_for`, e.g.
from the image's file name, so an OOD set is the same set of images in every
run, on every machine, with any number of workers::

    from mmspd.corruption import corrupt_image, seed_for
    foggy = corrupt_image(rgb, 'fog', severity=3, seed=seed_for('2008_000002'))

This module imports numpy only; ``imagecorruptions`` is imported at the
first corruption.
"""
import hashlib
import numbers

import numpy as np

#: Every corruption :func:`corrupt_image` accepts: the 15 ImageNet-C
#: corruptions, then the 4 extra ("validation") ones, in the package's order.
CORRUPTIONS = (
    'gaussian_noise', 'shot_noise', 'impulse_noise', 'defocus_blur',
    'glass_blur', 'motion_blur', 'zoom_blur', 'snow', 'frost', 'fog',
    'brightness', 'contrast', 'elastic_transform', 'pixelate',
    'jpeg_compression', 'speckle_noise', 'gaussian_blur', 'spatter',
    'saturate')

#: Severity levels (ImageNet-C's 1 = mildest to 5 = strongest).
SEVERITIES = (1, 2, 3, 4, 5)

#: The 15 ImageNet-C corruptions, those of the benchmark (mCE, mPC).
BENCHMARK_CORRUPTIONS = CORRUPTIONS[:15]

#: Named sets of corruptions: the choices of MMDetection's
#: ``tools/analysis_tools/test_robustness.py --corruptions`` (Michaelis et
#: al. 2019), with the same members in the same order. ``'holdout'`` is
#: ImageNet-C's 4 extra ("validation") corruptions.
CORRUPTION_SETS = {
    'benchmark': BENCHMARK_CORRUPTIONS,
    'all': CORRUPTIONS,
    'noise': ('gaussian_noise', 'shot_noise', 'impulse_noise'),
    'blur': ('defocus_blur', 'glass_blur', 'motion_blur', 'zoom_blur'),
    'weather': ('snow', 'frost', 'fog', 'brightness'),
    'digital': ('contrast', 'elastic_transform', 'pixelate',
                'jpeg_compression'),
    'holdout': ('speckle_noise', 'gaussian_blur', 'spatter', 'saturate'),
}


def resolve_corruptions(corruptions) -> tuple:
    """The corruption names that ``corruptions`` stands for, in order.

    Args:
        corruptions: a set name of :data:`CORRUPTION_SETS` (``'benchmark'``,
            ``'holdout'``, ...), one name of :data:`CORRUPTIONS`, or a
            list/tuple of such names and set names (expanded in place).

    Returns:
        A non-empty tuple of names of :data:`CORRUPTIONS`, each once.

    Raises:
        ValueError naming an unknown name, a corruption given twice (also
        through two sets) or an empty selection.
    """
    items = [corruptions] if isinstance(corruptions, str) else corruptions
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f'Invalid corruptions {corruptions!r}: expected a '
                         f'set name ({", ".join(CORRUPTION_SETS)}) or a '
                         f'non-empty list of corruption names')
    names = []
    for item in items:
        if isinstance(item, str) and item in CORRUPTION_SETS:
            names.extend(CORRUPTION_SETS[item])
        elif isinstance(item, str) and item in CORRUPTIONS:
            names.append(item)
        else:
            raise ValueError(
                f'Unknown corruption or corruption set {item!r}: expected '
                f'one of the sets {", ".join(CORRUPTION_SETS)} or one of '
                f'{", ".join(CORRUPTIONS)}')
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f'Corruptions selected more than once in '
                         f'{corruptions!r}: {twice}')
    return tuple(names)


def resolve_severities(severities) -> tuple:
    """``severities`` (an int or a list/tuple of ints) as a tuple of
    distinct ints of :data:`SEVERITIES`, in the given order; ``ValueError``
    naming a value outside 1..5, a repeated one or an empty selection."""
    items = [severities] if isinstance(severities, numbers.Integral) \
        and not isinstance(severities, bool) else severities
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f'Invalid severities {severities!r}: expected an '
                         f'int in 1..5 or a non-empty list of them')
    for value in items:
        if isinstance(value, bool) or not isinstance(
                value, numbers.Integral) or value not in SEVERITIES:
            raise ValueError(f'Invalid severity {value!r} in '
                             f'{severities!r}: expected ints in 1..5')
    values = [int(v) for v in items]
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise ValueError(f'Severities given more than once in '
                         f'{severities!r}: {twice}')
    return tuple(values)


#: Smallest height and width the corruptions support.
MIN_SIZE = 32

#: Corruptions whose randomness does not come from numpy's global RNG but
#: from a ``seed`` keyword (an unseeded generator when it is omitted).
_SEEDED_BY_KEYWORD = ('impulse_noise', 'glass_blur')


def seed_for(key, seed: int = 0) -> int:
    """A 32-bit seed for one image, stable across runs, processes and
    machines.

    Args:
        key: what identifies the image: a string (e.g. its file name) or an
            int (e.g. its index in the data set).
        seed: a base seed; another value gives another, equally
            reproducible, draw of the corruption noise for every image.

    Returns:
        An int in ``[0, 2**32)``, computed with SHA-256 of ``seed`` and
        ``key`` (never Python's ``hash``, which is salted per process).
    """
    if isinstance(key, bool) or not isinstance(key, (str, numbers.Integral)):
        raise TypeError(f'seed_for key must be a str or an int, got '
                        f'{key!r} ({type(key).__name__})')
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f'seed_for seed must be an int, got {seed!r}')
    kind = 's' if isinstance(key, str) else 'i'
    digest = hashlib.sha256(f'{int(seed)}:{kind}:{key}'.encode()).digest()
    return int.from_bytes(digest[:4], 'little')


def check_corruption(corruption: str, severity: int) -> None:
    """Raise ``ValueError`` naming ``corruption`` or ``severity`` unless
    ``corruption`` is in :data:`CORRUPTIONS` and ``severity`` an int in
    :data:`SEVERITIES` (for transforms that validate their config early)."""
    if not isinstance(corruption, str) or corruption not in CORRUPTIONS:
        raise ValueError(f'Unknown corruption {corruption!r}: expected one '
                         f'of {", ".join(CORRUPTIONS)}')
    if isinstance(severity, bool) or not isinstance(
            severity, numbers.Integral) or severity not in SEVERITIES:
        raise ValueError(f'Invalid severity {severity!r} for {corruption!r}:'
                         f' expected an int in 1..5')


def _check_arguments(image, corruption, severity, seed, channel_order):
    check_corruption(corruption, severity)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) \
            or not 0 <= seed < 2**32:
        raise ValueError(f'Invalid seed {seed!r}: expected an int in '
                         f'[0, 2**32) (see seed_for)')
    if channel_order not in ('rgb', 'bgr'):
        raise ValueError(f"Invalid channel_order {channel_order!r}: "
                         f"expected 'rgb' or 'bgr'")
    if not isinstance(image, np.ndarray):
        raise TypeError(f'image must be a numpy array, got '
                        f'{type(image).__name__}')
    if image.dtype != np.uint8:
        raise ValueError(f'image must be uint8 (0..255), got dtype '
                         f'{image.dtype}')
    shape = image.shape
    if not (image.ndim == 2 or (image.ndim == 3 and shape[2] in (1, 3))):
        raise ValueError(f'image must be HxW or HxWxC with C in (1, 3), got '
                         f'shape {shape}')
    if min(shape[:2]) < MIN_SIZE:
        raise ValueError(f'image must be at least {MIN_SIZE}x{MIN_SIZE} '
                         f'pixels for the corruptions, got shape {shape}')


def corrupt_image(image: np.ndarray, corruption: str, severity: int,
                  seed: int, channel_order: str = 'rgb') -> np.ndarray:
    """Corrupt one image; the result depends only on the arguments.

    Args:
        image: ``uint8`` array, ``HxW`` or ``HxWxC`` with ``C`` 1 or 3,
            height and width at least :data:`MIN_SIZE`. Not modified.
        corruption: one of :data:`CORRUPTIONS`.
        severity: an int in :data:`SEVERITIES`.
        seed: an int in ``[0, 2**32)`` (see :func:`seed_for`); the same
            seed and image give the same output, bit for bit.
        channel_order: ``'rgb'``, or ``'bgr'`` for images loaded with
            OpenCV (as mmcv's ``LoadImageFromFile`` does): colour-dependent
            corruptions (frost, saturate, ...) then see the true colours.
            Grayscale images are corrupted as three equal channels, of
            which the first is returned.

    Returns:
        A new ``uint8`` array with the shape and channel order of ``image``.

    Raises:
        ValueError / TypeError naming the invalid argument; ImportError when
        ``imagecorruptions-imaug`` is not installed.

    numpy's global RNG state is the same after the call as before it, even
    when the corruption raises.
    """
    _check_arguments(image, corruption, severity, seed, channel_order)
    try:
        import imagecorruptions
    except ImportError as error:  # pragma: no cover - environment specific
        raise ImportError(
            'Image corruptions need the imagecorruptions-imaug package: '
            'pip install imagecorruptions-imaug==1.1.5') from error
    if image.ndim == 3 and image.shape[2] == 3:
        rgb = image[..., ::-1] if channel_order == 'bgr' else image
    else:  # grayscale: the package corrupts 3 equal channels
        rgb = np.repeat(image.reshape(image.shape[:2] + (1, )), 3, axis=2)
    rgb = np.ascontiguousarray(rgb)
    kwargs = {'seed': int(seed)} if corruption in _SEEDED_BY_KEYWORD else {}
    state = np.random.get_state()
    try:
        np.random.seed(int(seed))
        out = imagecorruptions.corrupt(
            rgb, severity=int(severity), corruption_name=corruption,
            **kwargs)
    finally:
        np.random.set_state(state)
    out = np.asarray(out, dtype=np.uint8)
    if out.shape[:2] != image.shape[:2]:  # pragma: no cover - package bug
        raise RuntimeError(f'{corruption!r} changed the image size from '
                           f'{image.shape[:2]} to {out.shape[:2]}')
    if image.ndim == 2:
        return np.ascontiguousarray(out[..., 0])
    if image.shape[2] == 1:
        return np.ascontiguousarray(out[..., :1])
    if channel_order == 'bgr':
        out = out[..., ::-1]
    return np.ascontiguousarray(out)
