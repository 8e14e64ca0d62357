"""configs/{domainnet,imagenet}_{spd,adamw,l2sp}.py: the paper's recipe,
and the parameter groups each optimizer config builds on the real model."""
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

import mmspd  # noqa: F401  (optimizers, constructor)
import mmspd.classification  # noqa: F401
from tests.test_classification.clip_runs import REPO, TINY_ARCH

DATASETS = {'domainnet': (345, 60, 256), 'imagenet': (1000, 30, 512)}
METHODS = {'spd': ('AdamSPD', 1.0), 'adamw': ('AdamW', 0.1),
           'l2sp': ('AdamL2SP', 0.01)}
CONFIGS = [f'{d}_{m}' for d in DATASETS for m in METHODS]


def _load(name):
    return Config.fromfile(osp.join(REPO, 'configs', f'{name}.py'))


@pytest.mark.parametrize('name', CONFIGS)
def test_the_papers_recipe(name):
    dataset, method = name.split('_')
    num_classes, epochs, total_batch = DATASETS[dataset]
    cfg = _load(name)
    assert cfg.custom_imports.imports == ['mmspd', 'mmspd.classification']
    backbone = cfg.model.backbone
    assert (backbone.arch, backbone.patch_size, backbone.img_size) == (
        'b', 16, 224)
    assert backbone.pre_norm and backbone.drop_path_rate == 0.2
    assert backbone.layer_cfgs.act_cfg.type == 'QuickGELU'
    assert backbone.init_cfg == dict(
        type='Pretrained', prefix='backbone',
        checkpoint='checkpoints/clip-vit-base-p16_openai.pth')
    assert cfg.model.head.num_classes == num_classes
    assert cfg.data_preprocessor.num_classes == num_classes
    assert cfg.model.head.loss.label_smooth_val == 0.1
    assert cfg.model.train_cfg.augments == [
        dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]
    types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert 'RandAugment' in types and 'RandomErasing' in types
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.weight_decay) == METHODS[method]
    assert optimizer.lr == 2e-5
    assert cfg.train_cfg.max_epochs == epochs
    assert [s['type'] for s in cfg.param_scheduler] == [
        'LinearLR', 'CosineAnnealingLR']
    assert cfg.param_scheduler[-1]['end'] == epochs
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=total_batch)
    # the header states the same total batch
    with open(osp.join(REPO, 'configs', f'{name}.py')) as f:
        assert f'Total batch {total_batch} assumed' in f.read()
    assert cfg.test_cfg.type == 'RobustTestLoop'


@pytest.mark.parametrize('dataset', DATASETS)
def test_model_selection_never_reads_a_test_list(dataset):
    cfg = _load(f'{dataset}_spd')
    val = cfg.val_dataloader.dataset
    if dataset == 'domainnet':
        assert (val.domain, val.split) == ('real', 'val_split')
        assert cfg.train_dataloader.dataset.split == 'train_split'
        assert cfg.default_hooks.checkpoint.save_best == 'accuracy/top1'
    else:
        # ImageNet val is the ID test set: monitored, never selected on
        assert 'save_best' not in cfg.default_hooks.checkpoint


def test_domainnet_ood_sets_are_the_other_domains_test_lists():
    cfg = _load('domainnet_spd')
    assert cfg.test_dataloader.dataset.domain == 'real'
    assert cfg.test_dataloader.dataset.split == 'test'
    assert cfg.test_cfg.id_name == 'real'
    assert [(s.name, s.dataset) for s in cfg.test_cfg.ood_sets] == [
        (d, dict(domain=d)) for d in
        ('sketch', 'painting', 'infograph', 'clipart')]


def test_imagenet_a_and_r_use_the_masked_metric():
    cfg = _load('imagenet_spd')
    sets = {s.name: s for s in cfg.test_cfg.ood_sets}
    assert list(sets) == ['imagenet-v2', 'imagenet-sketch', 'imagenet-a',
                          'imagenet-r']
    for name, kind in (('imagenet-a', 'ImageNetA'),
                       ('imagenet-r', 'ImageNetR')):
        assert sets[name].dataset.type == kind
        assert sets[name].evaluator == dict(type='MaskedAccuracy',
                                            topk=(1, 5))
    for name in ('imagenet-v2', 'imagenet-sketch'):
        assert 'evaluator' not in sets[name]  # plain top-1/top-5 accuracy


def _groups(name):
    """``{param name: (weight_decay, anchor)}`` as the config's optimizer
    wrapper builds them for the (toy-sized) model of the config, and the
    optimizer's class name."""
    cfg = _load(name)
    cfg.model.backbone.update(arch=TINY_ARCH, img_size=32, patch_size=8,
                              init_cfg=None)
    cfg.model.head.in_channels = TINY_ARCH['embed_dims']
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    assert wrapper.clip_grad_kwargs == dict(max_norm=1.0)
    groups = {names[id(p)]: (g['weight_decay'], g.get('anchor'))
              for g in wrapper.optimizer.param_groups for p in g['params']}
    assert len(groups) == len(names)  # every parameter, once
    return groups, type(wrapper.optimizer).__name__


@pytest.mark.parametrize('dataset', DATASETS)
@pytest.mark.parametrize('method', ['spd', 'l2sp'])
def test_anchored_methods_pull_every_backbone_tensor_and_not_the_head(
        dataset, method):
    groups, optimizer = _groups(f'{dataset}_{method}')
    assert optimizer == METHODS[method][0]
    strength = METHODS[method][1]
    assert groups['head.layers.head.weight'] == (0.0, 'zero')
    assert groups['head.layers.head.bias'] == (0.0, 'zero')
    backbone = {n: g for n, g in groups.items() if n.startswith('backbone.')}
    assert len(backbone) == 19  # every tensor of the 1-layer ViT
    assert set(backbone.values()) == {(strength, 'init')}


@pytest.mark.parametrize('dataset', DATASETS)
def test_adamw_decays_weights_but_not_norms_biases_and_tokens(dataset):
    groups, optimizer = _groups(f'{dataset}_adamw')
    assert optimizer == 'AdamW'  # torch's: no anchors
    decay = {n for n, (wd, _) in groups.items() if wd == 0.1}
    assert decay == {
        'backbone.patch_embed.projection.weight',
        'backbone.layers.0.attn.qkv.weight',
        'backbone.layers.0.attn.proj.weight',
        'backbone.layers.0.ffn.layers.0.0.weight',
        'backbone.layers.0.ffn.layers.1.weight',
        'head.layers.head.weight',
    }
    assert {wd for n, (wd, _) in groups.items() if n not in decay} == {0.}
    assert groups['backbone.cls_token'][0] == 0.0
