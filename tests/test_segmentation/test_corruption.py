"""mmspd.corruption: deterministic ImageNet-C corruptions of one image,
and the named corruption sets of the robustness benchmarks."""
import ast
import importlib.util
import os.path as osp

import imagecorruptions
import numpy as np
import pytest

from mmspd.corruption import (BENCHMARK_CORRUPTIONS, CORRUPTION_SETS,
                              CORRUPTIONS, MIN_SIZE, check_corruption,
                              corrupt_image, resolve_corruptions,
                              resolve_severities, seed_for)

#: Corruptions that draw random numbers (the others are deterministic
#: filters whatever the seed).
RANDOM = ('gaussian_noise', 'shot_noise', 'impulse_noise', 'glass_blur',
          'motion_blur', 'snow', 'frost', 'fog', 'elastic_transform',
          'speckle_noise', 'spatter')
PAPER = ('fog', 'defocus_blur', 'gaussian_noise', 'brightness')


@pytest.fixture(scope='module')
def image():
    rng = np.random.default_rng(3)
    img = rng.integers(40, 200, size=(40, 52, 3), dtype=np.uint8)
    img[10:30, 5:25] = (250, 30, 30)  # a saturated red patch
    return img


def test_the_names_are_those_of_the_package():
    assert CORRUPTIONS == tuple(imagecorruptions.get_corruption_names('all'))
    assert set(PAPER) <= set(CORRUPTIONS)


@pytest.mark.parametrize('corruption', CORRUPTIONS)
def test_every_corruption_is_a_pure_function_of_its_arguments(
        image, corruption):
    original = image.copy()
    np.random.seed(123)
    state = np.random.get_state()
    first = corrupt_image(image, corruption, 3, seed=11)
    # numpy's global RNG is where it was: the next draw is unchanged
    after = np.random.randint(1 << 30)
    np.random.set_state(state)
    assert after == np.random.randint(1 << 30)
    np.random.seed(999)  # another global state must not matter
    second = corrupt_image(image, corruption, 3, seed=11)
    assert np.array_equal(first, second)
    assert first.shape == image.shape and first.dtype == np.uint8
    assert not np.array_equal(first, image)
    assert np.array_equal(image, original)  # input untouched
    if corruption in RANDOM:
        assert not np.array_equal(
            first, corrupt_image(image, corruption, 3, seed=12))


@pytest.mark.parametrize('corruption', PAPER)
def test_severity_5_changes_more_than_severity_1(image, corruption):
    change = [np.abs(corrupt_image(image, corruption, s, seed=0).astype(int)
                     - image).mean() for s in (1, 5)]
    assert 0 < change[0] < change[1], change


@pytest.mark.parametrize('corruption', ['frost', 'saturate'])
def test_bgr_images_are_corrupted_in_their_true_colours(image, corruption):
    rgb = corrupt_image(image, corruption, 4, seed=5)
    bgr = corrupt_image(np.ascontiguousarray(image[..., ::-1]), corruption,
                        4, seed=5, channel_order='bgr')
    assert np.array_equal(bgr, rgb[..., ::-1])
    # and the channel order does matter for these corruptions
    assert not np.array_equal(
        corrupt_image(np.ascontiguousarray(image[..., ::-1]), corruption, 4,
                      seed=5), rgb[..., ::-1])


@pytest.mark.parametrize('shape', [(40, 52), (40, 52, 1)])
def test_grayscale_images_keep_their_shape(image, shape):
    gray = image[..., 0].reshape(shape).copy()
    out = corrupt_image(gray, 'gaussian_noise', 2, seed=1)
    assert out.shape == shape and out.dtype == np.uint8
    assert not np.array_equal(out, gray)


def test_seed_for_is_stable_and_separates_keys_and_seeds():
    # pinned: changing the scheme would silently change every OOD set
    assert seed_for('2008_000002') == seed_for('2008_000002', 0) \
        == 383627922
    values = {seed_for('2008_000002'), seed_for('2008_000003'),
              seed_for('2008_000002', 1), seed_for(7), seed_for('7')}
    assert len(values) == 5
    assert all(0 <= v < 2**32 for v in values)


@pytest.mark.parametrize('key, seed, message', [
    (1.5, 0, 'key must be a str or an int, got 1.5'),
    (None, 0, 'got None'),
    (True, 0, 'got True'),
    ('a', 0.5, 'seed must be an int, got 0.5'),
])
def test_seed_for_rejects_bad_keys_and_seeds(key, seed, message):
    with pytest.raises(TypeError, match=message):
        seed_for(key, seed)


@pytest.mark.parametrize('kwargs, error, message', [
    (dict(corruption='fogg'), ValueError, "Unknown corruption 'fogg'"),
    (dict(severity=0), ValueError, 'Invalid severity 0'),
    (dict(severity=6), ValueError, 'Invalid severity 6'),
    (dict(severity=True), ValueError, 'Invalid severity True'),
    (dict(severity='3'), ValueError, "Invalid severity '3'"),
    (dict(seed=-1), ValueError, 'Invalid seed -1'),
    (dict(seed=2**32), ValueError, f'Invalid seed {2**32}'),
    (dict(channel_order='rgba'), ValueError, "channel_order 'rgba'"),
    (dict(image=np.zeros((40, 40, 3), np.float32)), ValueError,
     'uint8.*float32'),
    (dict(image=np.zeros((40, 40, 4), np.uint8)), ValueError,
     r'shape \(40, 40, 4\)'),
    (dict(image=np.zeros((20, 40, 3), np.uint8)), ValueError,
     rf'at least {MIN_SIZE}x{MIN_SIZE}.*\(20, 40, 3\)'),
    (dict(image=[[0] * 40] * 40), TypeError, 'numpy array, got list'),
])
def test_bad_arguments_are_named(image, kwargs, error, message):
    arguments = dict(image=image, corruption='fog', severity=3, seed=0)
    arguments.update(kwargs)
    state = np.random.get_state()
    with pytest.raises(error, match=message):
        corrupt_image(**arguments)
    assert np.array_equal(np.random.get_state()[1], state[1])


def test_check_corruption_accepts_every_name_and_severity():
    for corruption in CORRUPTIONS:
        for severity in range(1, 6):
            check_corruption(corruption, severity)
    with pytest.raises(ValueError, match="Unknown corruption None"):
        check_corruption(None, 3)


def _mmdet_corruption_sets():
    """The corruption lists of MMDetection's
    ``tools/analysis_tools/test_robustness.py`` as installed with mmdet
    (``mmdet/.mim/tools``), read from its source: ``{set name: [names]}``;
    ``None`` when that file is not installed."""
    spec = importlib.util.find_spec('mmdet')
    if spec is None or not spec.origin:
        return None
    path = osp.join(osp.dirname(spec.origin), '.mim', 'tools',
                    'analysis_tools', 'test_robustness.py')
    if not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read())
    sets = {}
    for node in ast.walk(tree):
        # if '<set>' in args.corruptions: corruptions = [...]
        if not (isinstance(node, ast.If) and isinstance(node.test,
                                                        ast.Compare)):
            continue
        left = node.test.left
        first = node.body[0]
        if isinstance(left, ast.Constant) and isinstance(
                first, ast.Assign) and isinstance(first.value, ast.List) \
                and getattr(first.targets[0], 'id', None) == 'corruptions':
            sets[left.value] = [e.value for e in first.value.elts]
    return sets


def test_the_sets_are_those_of_mmdetections_robustness_test():
    upstream = _mmdet_corruption_sets()
    if upstream is None:
        pytest.skip('mmdet with its tools (mmdet/.mim/tools) is not '
                    'installed')
    upstream.pop('None', None)  # its "no corruption" switch
    assert upstream == {k: list(v) for k, v in CORRUPTION_SETS.items()}


def test_the_sets_are_those_of_the_corruption_package():
    names = imagecorruptions.get_corruption_names
    assert CORRUPTION_SETS['benchmark'] == tuple(names('common'))
    assert CORRUPTION_SETS['holdout'] == tuple(names('validation'))
    assert CORRUPTION_SETS['all'] == tuple(names('all'))
    for group in ('noise', 'blur', 'weather', 'digital'):
        assert CORRUPTION_SETS[group] == tuple(names(group)), group
    assert BENCHMARK_CORRUPTIONS == CORRUPTIONS[:15]


@pytest.mark.parametrize('selection, expected', [
    ('holdout', ('speckle_noise', 'gaussian_blur', 'spatter', 'saturate')),
    ('fog', ('fog', )),
    (['fog', 'noise'], ('fog', 'gaussian_noise', 'shot_noise',
                        'impulse_noise')),
    (('snow', 'brightness'), ('snow', 'brightness')),
])
def test_resolve_corruptions_expands_set_names(selection, expected):
    assert resolve_corruptions(selection) == expected
    assert len(resolve_corruptions('all')) == 19


@pytest.mark.parametrize('selection, message', [
    ('benchmarks', "Unknown corruption or corruption set 'benchmarks'"),
    (['fog', 3], 'set 3'),
    (['weather', 'brightness'], r"more than once.*\['brightness'\]"),
    ([], 'non-empty'),
    (None, 'Invalid corruptions None'),
])
def test_resolve_corruptions_names_what_is_wrong(selection, message):
    with pytest.raises(ValueError, match=message):
        resolve_corruptions(selection)


def test_resolve_severities():
    assert resolve_severities(3) == (3, )
    assert resolve_severities([5, 1]) == (5, 1)
    for bad, message in ((0, 'severity 0'), ([1, 6], 'severity 6'),
                         ([1.0], 'severity 1.0'), ([True], 'severity True'),
                         ([2, 2], r'more than once.*\[2\]'),
                         ((), 'non-empty')):
        with pytest.raises(ValueError, match=message):
            resolve_severities(bad)
