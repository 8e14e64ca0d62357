"""configs/domainnet_lora_{spd,adamw}.py end to end on tiny runs: LoRA
through mmpretrain's LoRAModel, AdamSPD with zero anchors on the adapters,
the frozen CLIP backbone untouched, resume from an adapters-only
checkpoint."""
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmspd.optim import AdamSPD
from tests.test_classification.clip_runs import write_tiny_clip_weights
from tests.test_classification.data_files import write_domainnet
from tests.test_robust_ft.tiny_vit import tiny_vit_config

ITERS_PER_EPOCH = 2  # 4 classes x 2 training images, batch 4


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('lora')
    data = str(root / 'domainnet')
    write_domainnet(data)
    return dict(root=root, data=data,
                clip=write_tiny_clip_weights(root))


def _clip_key(name: str) -> str:
    """Model parameter name -> key of the converted CLIP file."""
    return (name.replace('backbone.module.', 'backbone.')
            .replace('.original_layer.', '.'))


@pytest.fixture(scope='module')
def spd_run(files):
    cfg = tiny_vit_config('domainnet_lora_spd', files['root'] / 'spd',
                          files['clip'], files['data'])
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def test_lora_spd_groups(spd_run):
    optimizer = spd_run.optim_wrapper.optimizer
    assert isinstance(optimizer, AdamSPD)
    names = {id(p): n for n, p in spd_run.model.named_parameters()}
    options = {}
    for group in optimizer.param_groups:
        for param in group['params']:
            options[names[id(param)]] = (group['weight_decay'],
                                         group['anchor'])
    lora = [n for n in names.values() if 'lora_' in n]
    # rank-16 adapters (down, up) on qkv and attn.proj of the one block
    assert sorted(lora) == sorted(
        f'backbone.module.layers.0.attn.{t}.lora_{d}.weight'
        for t in ('qkv', 'proj') for d in ('down', 'up'))
    for name in lora:
        assert options[name] == (1.0, 'zero'), name
    for name in ('head.layers.head.weight', 'head.layers.head.bias'):
        assert options[name] == (0.0, 'zero'), name


def test_lora_spd_trains_adapters_and_leaves_the_backbone(spd_run, files):
    optimizer = spd_run.optim_wrapper.optimizer
    clip = torch.load(files['clip'], weights_only=True)['state_dict']
    frozen = trained = 0
    for name, param in spd_run.model.named_parameters():
        state = optimizer.state.get(param, {})
        if 'lora_' in name or name.startswith('head.'):
            assert param.requires_grad, name
            # zero anchor: nothing stored; every step updated it
            assert 'anchor' not in state, name
            assert float(state['step']) == 2 * ITERS_PER_EPOCH, name
            trained += 1
        else:
            assert not param.requires_grad, name
            assert not state, name  # no moments, no anchor
            assert torch.equal(param, clip[_clip_key(name)]), name
            frozen += 1
    assert frozen > 10 and trained == 6
    # the adapters moved: dW = up @ down is no longer zero
    block = spd_run.model.backbone.module.layers[0].attn.qkv
    assert block.lora_down.weight.abs().sum() > 0


def test_lora_checkpoint_holds_the_adapters_and_resume_restores_them(
        spd_run, files):
    checkpoint = torch.load(f'{spd_run.work_dir}/epoch_1.pth',
                            weights_only=True)
    assert all('lora_' in k or k.startswith('head.')
               for k in checkpoint['state_dict'])
    seen = {}

    class Capture(Hook):

        def before_train(self, runner):
            optimizer = runner.optim_wrapper.optimizer
            names = dict(runner.model.named_parameters())
            seen['weights'] = {n: p.detach().clone()
                               for n, p in names.items()}
            seen['steps'] = {n: float(optimizer.state[p]['step'])
                             for n, p in names.items()
                             if p in optimizer.state}
            seen['moments'] = {n: optimizer.state[p]['exp_avg'].clone()
                               for n, p in names.items()
                               if p in optimizer.state}

    cfg = tiny_vit_config('domainnet_lora_spd', files['root'] / 'resumed',
                          files['clip'], files['data'],
                          options=dict(resume=True,
                                       load_from=f'{spd_run.work_dir}/'
                                       f'epoch_1.pth'))
    runner = Runner.from_cfg(cfg)
    runner.register_hook(Capture())
    runner.train()
    clip = torch.load(files['clip'], weights_only=True)['state_dict']
    for name, value in seen['weights'].items():
        if name in checkpoint['state_dict']:  # adapters and head resumed
            assert torch.equal(value, checkpoint['state_dict'][name]), name
        else:  # the frozen backbone rebuilt from the CLIP file
            assert torch.equal(value, clip[_clip_key(name)]), name
    assert set(seen['steps']) == {n for n in checkpoint['state_dict']}
    assert set(seen['steps'].values()) == {float(ITERS_PER_EPOCH)}
    # the moments are the saved ones (optimizer state is indexed in the
    # order of the parameter groups)
    names = {id(p): n for n, p in runner.model.named_parameters()}
    order = [names[id(p)] for g in runner.optim_wrapper.optimizer.param_groups
             for p in g['params']]
    saved = checkpoint['optimizer']['state']
    assert sorted(order[i] for i in saved) == sorted(seen['moments'])
    for index, state in saved.items():
        assert torch.equal(seen['moments'][order[index]], state['exp_avg'])
    # and training went on from there: one more epoch of steps
    optimizer = runner.optim_wrapper.optimizer
    for name, param in runner.model.named_parameters():
        if param.requires_grad:
            assert float(optimizer.state[param]['step']) == \
                2 * ITERS_PER_EPOCH, name


def test_lora_adamw_baseline_trains_adapters_only(files):
    cfg = tiny_vit_config('domainnet_lora_adamw', files['root'] / 'adamw',
                          files['clip'], files['data'])
    runner = Runner.from_cfg(cfg)
    runner.train()
    optimizer = runner.optim_wrapper.optimizer
    assert type(optimizer).__name__ == 'AdamW'
    clip = torch.load(files['clip'], weights_only=True)['state_dict']
    decay = {}
    names = {id(p): n for n, p in runner.model.named_parameters()}
    for group in optimizer.param_groups:
        for param in group['params']:
            decay[names[id(param)]] = group['weight_decay']
    for name, param in runner.model.named_parameters():
        if 'lora_' in name or name.startswith('head.'):
            assert optimizer.state[param], name
            assert decay[name] == (0. if name.endswith('bias') else 0.1)
        else:
            assert not optimizer.state.get(param), name
            assert torch.equal(param, clip[_clip_key(name)]), name
