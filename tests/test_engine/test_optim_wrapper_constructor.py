"""SPDOptimWrapperConstructor: upstream paramwise rules plus group options."""
import logging

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper

import mmspd  # noqa: F401  (registers the constructor and optimizers)
from mmspd.optim import AdamL2SP, AdamSPD


class ToyModel(nn.Module):
    """Every kind of layer the paramwise rules distinguish."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.conv = nn.Conv2d(3, 4, 3)
        self.backbone.bn = nn.BatchNorm2d(4)
        self.backbone.dwconv = nn.Conv2d(4, 4, 3, groups=4, bias=False)
        self.backbone.ln = nn.LayerNorm(4)
        self.backbone.pos_embed = nn.Parameter(torch.zeros(4))
        self.neck = nn.Linear(4, 4)
        self.neck.lora_down = nn.Parameter(torch.zeros(2, 4))
        self.head = nn.Linear(4, 2)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def _build(optimizer, paramwise_cfg=None):
    cfg = dict(constructor='SPDOptimWrapperConstructor', optimizer=optimizer)
    if paramwise_cfg is not None:
        cfg['paramwise_cfg'] = paramwise_cfg
    model = ToyModel()
    return model, build_optim_wrapper(model, cfg)


def _groups_by_name(model, optimizer):
    """{parameter name: (lr, weight_decay, anchor)} as built."""
    names = {id(p): n for n, p in model.named_parameters()}
    table = {}
    for group in optimizer.param_groups:
        for p in group['params']:
            table[names[id(p)]] = (group['lr'], group['weight_decay'],
                                   group.get('anchor'))
    return table


def test_paramwise_rules_and_custom_group_options():
    model, wrapper = _build(
        dict(type='AdamSPD', lr=0.01, weight_decay=1.0),
        dict(norm_decay_mult=0., bias_decay_mult=0.5, dwconv_decay_mult=0.25,
             custom_keys={
                 'head': dict(lr_mult=10., decay_mult=0.),
                 'lora_': dict(anchor='zero'),
                 'pos_embed': dict(decay_mult=0.),
             }))
    assert isinstance(wrapper.optimizer, AdamSPD)
    expected = {
        'backbone.conv.weight': (0.01, 1.0, 'init'),
        'backbone.conv.bias': (0.01, 0.5, 'init'),
        'backbone.bn.weight': (0.01, 0.0, 'init'),
        'backbone.bn.bias': (0.01, 0.0, 'init'),
        'backbone.dwconv.weight': (0.01, 0.25, 'init'),
        'backbone.ln.weight': (0.01, 0.0, 'init'),
        'backbone.ln.bias': (0.01, 0.0, 'init'),
        'backbone.pos_embed': (0.01, 0.0, 'init'),
        'neck.weight': (0.01, 1.0, 'init'),
        'neck.bias': (0.01, 0.5, 'init'),
        'neck.lora_down': (0.01, 1.0, 'zero'),
        'head.weight': (0.1, 0.0, 'init'),
        'head.bias': (0.1, 0.0, 'init'),
    }
    built = _groups_by_name(model, wrapper.optimizer)
    assert built.keys() == expected.keys()  # frozen layer left out
    for name, (lr, decay, anchor) in expected.items():
        got_lr, got_decay, got_anchor = built[name]
        assert (got_lr, got_decay) == pytest.approx((lr, decay)), name
        assert got_anchor == anchor, name
    # one group per distinct option set, none left carrying the multipliers
    groups = wrapper.optimizer.param_groups
    assert len(groups) == 6
    assert all('lr_mult' not in g and 'decay_mult' not in g for g in groups)


def test_group_table_is_logged():
    logger = MMLogger.get_current_instance()
    messages = []

    class ListHandler(logging.Handler):

        def emit(self, record):
            messages.append(record.getMessage())

    handler = ListHandler()
    logger.addHandler(handler)
    try:
        _build(dict(type='AdamSPD', lr=0.01, weight_decay=1.0),
               dict(custom_keys={'head': dict(decay_mult=0.)}))
    finally:
        logger.removeHandler(handler)
    table = [m for m in messages if 'parameter group(s) for AdamSPD' in m]
    assert len(table) == 1
    lines = table[0].splitlines()
    assert lines[1].split() == ['group', 'tensors', 'numel', 'lr',
                                'weight_decay', 'anchor']
    assert len(lines) == 2 + 2  # header line, column names, two groups


def test_without_paramwise_cfg_one_group_holds_every_parameter():
    model, wrapper = _build(dict(type='AdamSPD', lr=0.01, weight_decay=1.0))
    groups = wrapper.optimizer.param_groups
    assert len(groups) == 1
    assert len(groups[0]['params']) == len(list(model.parameters()))


def test_unknown_custom_key_option_names_it():
    with pytest.raises(ValueError, match="'decay_mul'.*'head'"):
        _build(dict(type='AdamSPD', lr=0.01, weight_decay=1.0),
               dict(custom_keys={'head': dict(decay_mul=0.)}))


def test_bad_anchor_in_custom_keys_is_rejected_by_the_optimizer():
    with pytest.raises(ValueError, match="anchor='pretrained'"):
        _build(dict(type='AdamSPD', lr=0.01, weight_decay=1.0),
               dict(custom_keys={'head': dict(anchor='pretrained')}))


def test_serves_l2sp_and_plain_torch_optimizers():
    model, wrapper = _build(
        dict(type='AdamL2SP', lr=0.01, weight_decay=0.1),
        dict(custom_keys={'head': dict(decay_mult=0., anchor='zero')}))
    assert isinstance(wrapper.optimizer, AdamL2SP)
    assert _groups_by_name(model, wrapper.optimizer)['head.weight'] == \
        (0.01, 0.0, 'zero')

    model, wrapper = _build(
        dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
        dict(custom_keys={'head': dict(lr_mult=0.1, nesterov=True)}))
    assert isinstance(wrapper.optimizer, torch.optim.SGD)
    head = [g for g in wrapper.optimizer.param_groups if g['nesterov']]
    assert len(head) == 1 and head[0]['lr'] == pytest.approx(0.001)
    with pytest.raises(ValueError, match="'anchor'"):
        _build(dict(type='SGD', lr=0.01),
               dict(custom_keys={'head': dict(anchor='zero')}))


def test_unknown_optimizer_type_is_a_clear_error():
    with pytest.raises(ValueError, match="'AdamSPDD'"):
        _build(dict(type='AdamSPDD', lr=0.01),
               dict(custom_keys={'head': dict(lr_mult=0.1)}))


def test_merged_groups_train_like_per_parameter_groups():
    """Merging is an implementation detail: the numbers are unchanged."""
    torch.manual_seed(0)
    model, wrapper = _build(
        dict(type='AdamSPD', lr=0.05, weight_decay=1.0),
        dict(custom_keys={'head': dict(decay_mult=0.5)}))
    reference = ToyModel()
    reference.load_state_dict(model.state_dict())
    names = dict(reference.named_parameters())
    ref_groups = []
    for name, p in reference.named_parameters():
        if not p.requires_grad:
            continue
        ref_groups.append(dict(params=[p],
                               weight_decay=0.5 if 'head' in name else 1.0))
    ref_opt = AdamSPD(ref_groups, lr=0.05)  # same (default) kernel
    x = torch.randn(2, 3, 6, 6)
    for _ in range(5):
        for m, opt in ((model, wrapper.optimizer), (reference, ref_opt)):
            opt.zero_grad()
            feat = m.backbone.dwconv(m.backbone.bn(m.backbone.conv(x)))
            feat = m.backbone.ln(feat.mean((2, 3)) + m.backbone.pos_embed)
            out = m.head(m.neck(feat) + (m.neck.lora_down.sum()))
            out.square().sum().backward()
            opt.step()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, names[name])


class SharedModel(nn.Module):
    """Parameters reachable twice: a block shared by two parents (as in
    weight-shared heads) and a linear layer whose weight is tied to an
    embedding's."""

    def __init__(self):
        super().__init__()
        shared = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.encoder = nn.Module()
        self.encoder.block = shared
        self.encoder.conv = nn.Conv2d(3, 4, 3)
        self.decoder = nn.Module()
        self.decoder.block = shared  # the same module again
        self.embed = nn.Embedding(6, 4)
        self.head = nn.Linear(4, 6, bias=False)
        self.head.weight = self.embed.weight  # tied weights


SHARED_CASES = {
    'multipliers by name': dict(custom_keys={
        'encoder.block': dict(lr_mult=2., decay_mult=0.5),
        'decoder.block': dict(lr_mult=3.),
        'head': dict(lr_mult=10., decay_mult=0.),
    }),
    'norm and bias rules': dict(norm_decay_mult=0., bias_decay_mult=0.25,
                                custom_keys={'decoder': dict(lr_mult=0.1)}),
    'defaults only': dict(),
}


def _options_by_name(model, optimizer):
    """{first name of each parameter: its group's effective options}: every
    option the optimizer reads (params, and the multipliers mmengine leaves
    in its groups as bookkeeping, excluded)."""
    names = {}
    for name, p in model.named_parameters():  # first name of each tensor
        names.setdefault(id(p), name)
    table = {}
    for group in optimizer.param_groups:
        options = {k: v for k, v in group.items()
                   if k not in ('params', 'lr_mult', 'decay_mult')}
        for p in group['params']:
            assert names[id(p)] not in table, 'a parameter is in two groups'
            table[names[id(p)]] = options
    return table


def _build_with(constructor, model, paramwise_cfg):
    return build_optim_wrapper(model, dict(
        constructor=constructor, paramwise_cfg=paramwise_cfg,
        optimizer=dict(type='AdamSPD', lr=0.01, weight_decay=1.0)))


@pytest.mark.parametrize('case', sorted(SHARED_CASES))
def test_duplicates_raise_like_mmengine_unless_bypassed(case):
    paramwise_cfg = dict(SHARED_CASES[case], bypass_duplicate=False)
    message = 'some parameters appear in more than one parameter group'
    with pytest.raises(ValueError, match=message):
        _build_with('DefaultOptimWrapperConstructor', SharedModel(),
                    paramwise_cfg)
    with pytest.raises(ValueError, match=message) as error:
        _build_with('SPDOptimWrapperConstructor', SharedModel(),
                    paramwise_cfg)
    # ours names the tensors and every name they are reachable by
    assert 'encoder.block.0.weight = decoder.block.0.weight' in str(
        error.value)
    assert 'embed.weight = head.weight' in str(error.value)
    assert 'bypass_duplicate=True' in str(error.value)


@pytest.mark.parametrize('case', sorted(SHARED_CASES))
def test_bypassed_duplicates_get_mmengines_options(case):
    """First occurrence wins, as in mmengine: every parameter's effective
    options equal those mmengine's own constructor gives it."""
    paramwise_cfg = dict(SHARED_CASES[case], bypass_duplicate=True)
    model = SharedModel()
    upstream = _options_by_name(model, _build_with(
        'DefaultOptimWrapperConstructor', model, paramwise_cfg).optimizer)
    ours_wrapper = _build_with('SPDOptimWrapperConstructor', model,
                               paramwise_cfg)
    ours = _options_by_name(model, ours_wrapper.optimizer)
    assert ours.keys() == upstream.keys()
    distinct_names = {n for n, _ in model.named_parameters()}
    assert set(ours) == distinct_names  # every tensor once, none missing
    for name in upstream:
        assert ours[name] == upstream[name], name
    # each tensor once in the merged groups (torch would warn otherwise)
    params = [id(p) for g in ours_wrapper.optimizer.param_groups
              for p in g['params']]
    assert len(params) == len(set(params)) == len(distinct_names)
    # merging stays: fewer groups than upstream's one per tensor
    assert len(ours_wrapper.optimizer.param_groups) < len(upstream)


def test_first_occurrence_decides_a_shared_blocks_options():
    """The shared block is met first as encoder.block: its rule applies,
    decoder.block's never does."""
    model = SharedModel()
    wrapper = _build_with('SPDOptimWrapperConstructor', model, dict(
        SHARED_CASES['multipliers by name'], bypass_duplicate=True))
    options = _options_by_name(model, wrapper.optimizer)
    assert options['encoder.block.0.weight']['lr'] == pytest.approx(0.02)
    assert options['encoder.block.0.weight']['weight_decay'] == \
        pytest.approx(0.5)
    assert options['embed.weight']['lr'] == pytest.approx(0.01)


def test_without_paramwise_cfg_shared_tensors_are_listed_once():
    """No paramwise_cfg: one group of model.parameters(), which lists a
    shared tensor once, for upstream and ours alike (no error)."""
    model = SharedModel()
    for constructor in ('DefaultOptimWrapperConstructor',
                        'SPDOptimWrapperConstructor'):
        wrapper = build_optim_wrapper(model, dict(
            constructor=constructor,
            optimizer=dict(type='AdamSPD', lr=0.01, weight_decay=1.0)))
        params = wrapper.optimizer.param_groups[0]['params']
        assert len(params) == len(set(map(id, params))) == len(
            list(model.parameters()))
