"""The "pretrained" Swin-T file of the coco configs: OpenMMLab's layout of
the ImageNet-1k classifier, random values (tests.test_segmentation.
swin_release writes it from mmseg's Swin-T; mmdet's Swin-T has the same
tensor names, which the strict loading check of the coco configs
confirms)."""
from tests.test_segmentation.swin_release import write_swin_t_release

#: mmdet-only arguments of the configs' backbone that mmseg's Swin lacks
MMDET_ONLY = ('convert_weights', )


def write_coco_swin_t(path: str, backbone_cfg: dict, seed: int = 11):
    """Write the file for the backbone of a coco config; return its
    tensors."""
    cfg = {k: v for k, v in dict(backbone_cfg).items()
           if k not in MMDET_ONLY}
    return write_swin_t_release(path, cfg, seed)


#: mmdet's backbone names -> the names of Microsoft's Swin release
#: (github.com/SwinTransformer/storage, swin_tiny_patch4_window7_224.pth),
#: the inverse of mmdet's ``swin_converter`` renames
MICROSOFT_NAMES = (('stages.', 'layers.'), ('attn.w_msa.', 'attn.'),
                   ('ffn.layers.0.0.', 'mlp.fc1.'),
                   ('ffn.layers.1.', 'mlp.fc2.'),
                   ('patch_embed.projection.', 'patch_embed.proj.'))


def write_microsoft_swin_t(path: str, backbone_cfg: dict, seed: int = 5):
    """A random Swin-T classifier file in the layout of Microsoft's release
    (``{'model': state}``, their tensor names, a 1000-class head and the
    final norm), which mmdet's upstream Swin configs load with
    ``convert_weights=True``. Integer buffers (relative position indices)
    are the backbone's own. Returns the saved state."""
    import torch
    from mmdet.registry import MODELS
    backbone = MODELS.build(dict(backbone_cfg, init_cfg=None,
                                 _scope_='mmdet'))
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in backbone.state_dict().items():
        if name.split('.')[0] in {f'norm{i}' for i in range(4)}:
            continue  # the detection backbone's output norms
        for ours, theirs in MICROSOFT_NAMES:
            name = name.replace(ours, theirs)
        if value.is_floating_point():
            gain = name.endswith('weight') and 'norm' in name
            value = float(gain) + 0.05 * torch.randn(value.shape,
                                                     generator=gen)
        state[name] = value.clone()
    width = backbone_cfg.get('embed_dims', 96) * 8
    state['norm.weight'] = 1 + 0.05 * torch.randn(width, generator=gen)
    state['norm.bias'] = 0.05 * torch.randn(width, generator=gen)
    state['head.weight'] = 0.05 * torch.randn(1000, width, generator=gen)
    state['head.bias'] = torch.zeros(1000)
    torch.save({'model': state}, path)
    return state
