"""Image classification under distribution shift (imports mmpretrain).

Imported by configs through ``custom_imports``, never by ``import mmspd``.
Registers into mmpretrain's registries:

* ``DATASETS``: :class:`DomainNet` (any domain, any split file),
  :class:`ImageNetV2`, :class:`ImageNetSketch`, :class:`ImageNetA`,
  :class:`ImageNetR` (labels in the 1000-class ImageNet index),
  :class:`ImageNetC` (one corruption and severity of ImageNet-C's release);
* ``METRICS``: :class:`MaskedAccuracy` (top-k with the logits restricted to
  the 200 classes of ImageNet-A/-R).

:mod:`~mmspd.classification.clip_checkpoint` converts OpenAI's CLIP image
encoder to mmpretrain's ViT (``tools/model_converters/``).
"""
from .domainnet import DOMAINNET_DOMAINS, DomainNet
from .imagenet_c import ImageNetC
from .imagenet_variants import ImageNetA, ImageNetR, ImageNetSketch, ImageNetV2
from .metrics import MaskedAccuracy

__all__ = [
    'DomainNet', 'DOMAINNET_DOMAINS', 'ImageNetV2', 'ImageNetSketch',
    'ImageNetA', 'ImageNetR', 'ImageNetC', 'MaskedAccuracy'
]
