"""CLIP's zero-shot classifier as the linear head of the fine-tuning model.

CLIP classifies an image by comparing its embedding with text embeddings
of prompts ("a photo of a {class}.") for every class. This module computes
that classifier from OpenAI's CLIP file (the ``ViT-B-16.pt`` /
``ViT-L-14.pt`` that :mod:`~mmspd.classification.clip_checkpoint` converts,
TorchScript archive or plain state dict) as a weight of the configs' head
(mmpretrain's ``VisionTransformerClsHead``: ``head.layers.head``, a linear
layer on the class token):

* per class, every template's prompt is tokenized (OpenAI's BPE tokenizer,
  the copy mmseg ships in ``mmseg.utils.tokenizer``), encoded by CLIP's
  text tower (token and position embeddings, the residual attention blocks
  of mmpretrain's ``clip_generator_helper`` with a causal mask,
  ``ln_final``, the end-of-text token's feature ``@ text_projection``) and
  L2-normalised; the mean over templates is normalised again: ``T[c]``;
* the image side of CLIP is ``ln_post(class token) @ visual.proj``. The
  configs' backbone already applies ``ln_post`` (mmpretrain's final norm
  ``ln1``, on every token, then the class token is taken) and the head
  reads that 768-d feature as it is (no extra norm, no hidden layer), so
  only ``visual.proj`` is folded into the head:
  ``W = exp(logit_scale) * T @ visual.proj^T`` (``[num_classes, width]``),
  bias 0.

What the head computes: ``W f = exp(logit_scale) * (f @ proj) @ T^T``.
CLIP's own logits divide ``f @ proj`` by its norm first; a linear head
cannot, so this head's logits are CLIP's times ``||f @ proj||``, one
positive factor per image: the same class ranking (top-1/top-5 accuracy
equal to CLIP's zero-shot accuracy) with a sharper softmax.

Computation is exact, not approximate, in one respect that saves time: the
text tower's attention is causal and the feature is read at the
end-of-text token, so tokens after it cannot change it; each batch is cut
to its longest prompt before the transformer.
"""
import importlib.util
import os.path as osp
import sys
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: The head's parameters in the configs' classifier (mmpretrain's
#: ``VisionTransformerClsHead`` without hidden layer).
HEAD_WEIGHT = 'head.layers.head.weight'
HEAD_BIAS = 'head.layers.head.bias'
#: Keys of the text tower in OpenAI's state dict (besides the blocks).
TEXT_KEYS = ('token_embedding.weight', 'positional_embedding',
             'ln_final.weight', 'ln_final.bias', 'text_projection')
#: Also needed for the head: the image projection and the logit scale.
HEAD_INPUT_KEYS = ('visual.proj', 'logit_scale')
#: Entries of OpenAI's TorchScript archives that are not weights.
_ARCHIVE_ENTRIES = ('input_resolution', 'context_length', 'vocab_size')
#: Class lists by data set name (see :func:`class_names`).
DATASETS = ('imagenet', 'imagenet-a', 'imagenet-r', 'domainnet')


def _mmpretrain_prompts():
    """mmpretrain's module of CLIP prompt templates
    (``mmpretrain/models/multimodal/clip/utils.py``).

    Without ``transformers`` mmpretrain registers placeholders for its CLIP
    models, and importing the ``clip`` package then clashes with them; the
    templates module itself is plain data, so it is read from its file when
    the package is not importable."""
    name = 'mmpretrain.models.multimodal.clip.utils'
    if name in sys.modules:
        return sys.modules[name]
    import mmpretrain
    path = osp.join(osp.dirname(mmpretrain.__file__), 'models', 'multimodal',
                    'clip', 'utils.py')
    spec = importlib.util.spec_from_file_location(
        'mmspd_mmpretrain_clip_prompts', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def template_sets() -> Dict[str, List[Callable[[str], str]]]:
    """The prompt template sets by name: mmpretrain's (the names of its
    ``PROMPT_MAP``): ``openai_imagenet`` (OpenAI's 80 ImageNet templates),
    ``openai_imagenet_sub`` (OpenAI's 7-template subset), ``openai_cifar100``
    and ``vanilla`` ("a photo of a {c}")."""
    prompts = _mmpretrain_prompts()
    return {
        'openai_imagenet': list(prompts.OPENAI_IMAGENET_PROMPT),
        'openai_imagenet_sub': list(prompts.OPENAI_IMAGENET_PROMPT_SUB),
        'openai_cifar100': list(prompts.OPENAI_CIFAR100_PROMPT),
        'vanilla': [lambda c: f'a photo of a {c}'],
    }


def get_templates(name: str) -> List[Callable[[str], str]]:
    """One template set by name; ``ValueError`` naming the known ones."""
    sets = template_sets()
    if name not in sets:
        raise ValueError(f'Unknown prompt template set {name!r}: expected '
                         f'one of {sorted(sets)}')
    return sets[name]


def class_names(dataset: str) -> List[str]:
    """The class names a prompt uses, in the label order of the data set.

    * ``imagenet``: OpenAI's curated ImageNet-1k names (mmpretrain's
      ``IMAGENET_SIMPLE_CATEGORIES``), in class-index order;
    * ``imagenet-a`` / ``imagenet-r``: those of the 200 classes of the
      data set, in the order of their 1000-class indices (the data sets'
      ``label_subset``, which ``MaskedAccuracy`` uses);
    * ``domainnet``: the 345 classes of
      :data:`~mmspd.classification.categories.DOMAINNET_CLASSES` with
      ``_`` written as a space.
    """
    from mmpretrain.datasets.categories import IMAGENET_SIMPLE_CATEGORIES

    from .categories import (DOMAINNET_CLASSES, IMAGENET_A_WNIDS,
                             IMAGENET_R_WNIDS, IMAGENET_WNIDS)
    if dataset == 'imagenet':
        return list(IMAGENET_SIMPLE_CATEGORIES)
    if dataset in ('imagenet-a', 'imagenet-r'):
        wnids = IMAGENET_A_WNIDS if dataset == 'imagenet-a' \
            else IMAGENET_R_WNIDS
        index = {w: i for i, w in enumerate(IMAGENET_WNIDS)}
        return [IMAGENET_SIMPLE_CATEGORIES[i]
                for i in sorted(index[w] for w in wnids)]
    if dataset == 'domainnet':
        return [name.replace('_', ' ') for name in DOMAINNET_CLASSES]
    raise ValueError(f'Unknown data set {dataset!r} for class names: '
                     f'expected one of {list(DATASETS)} (or give the names '
                     f'themselves)')


def tokenize(texts: Union[str, Sequence[str]],
             context_length: int = 77) -> Tensor:
    """OpenAI CLIP's tokenization, ``[len(texts), context_length]``:
    start-of-text, the BPE tokens of the cleaned, lower-cased text (ftfy,
    HTML unescaping, whitespace folded), end-of-text, zero padding; a text
    that is too long is cut and still ends with end-of-text."""
    from mmseg.utils.tokenizer import tokenize as _tokenize
    return _tokenize(list([texts] if isinstance(texts, str) else texts),
                     context_length=context_length)


def _causal_mask(length: int) -> Tensor:
    return torch.full((length, length), float('-inf')).triu_(1)


def _missing_text_keys(state_dict: Dict[str, Tensor]) -> List[str]:
    missing = [k for k in TEXT_KEYS + HEAD_INPUT_KEYS if k not in state_dict]
    if not any(k.startswith('transformer.resblocks.') for k in state_dict):
        missing.append('transformer.resblocks.*')
    return missing


class CLIPTextEncoder(nn.Module):
    """CLIP's text tower with OpenAI's parameter names, built from them.

    The blocks are mmpretrain's ``ResidualAttentionBlock`` (OpenAI's layout:
    ``attn`` an ``nn.MultiheadAttention``, ``ln_1``, ``mlp.c_fc``,
    QuickGELU, ``mlp.c_proj``, ``ln_2``, LayerNorm eps 1e-5).
    """

    def __init__(self, width: int, layers: int, heads: int,
                 context_length: int, vocab_size: int, embed_dim: int):
        super().__init__()
        from mmpretrain.models.utils.clip_generator_helper import (
            LayerNorm, Transformer)
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(
            torch.zeros(context_length, width))
        self.transformer = Transformer(width, layers, heads,
                                       attn_mask=_causal_mask(context_length))
        self.ln_final = LayerNorm(width)
        self.text_projection = nn.Parameter(torch.zeros(width, embed_dim))

    @classmethod
    def from_state_dict(cls, state_dict: Dict[str, Tensor],
                        source: str = 'the CLIP state dict'
                        ) -> 'CLIPTextEncoder':
        """The text tower of an OpenAI CLIP state dict, loaded strictly, in
        float32; its sizes are read from the shapes (heads: width / 64, as
        OpenAI's ``build_model``). ``ValueError`` naming ``source`` and the
        missing keys when the file has no (complete) text tower."""
        missing = _missing_text_keys(state_dict)
        if missing:
            raise ValueError(
                f'{source} has no CLIP text tower: missing {missing} (an '
                f'image-encoder-only file, e.g. one converted by '
                f'openai_clip_to_mmpretrain.py, cannot give a zero-shot '
                f'head; use OpenAI\'s own CLIP file)')
        width = state_dict['ln_final.weight'].shape[0]
        layers = 1 + max(int(k.split('.')[2]) for k in state_dict
                         if k.startswith('transformer.resblocks.'))
        context_length, _ = state_dict['positional_embedding'].shape
        encoder = cls(width=width, layers=layers, heads=max(1, width // 64),
                      context_length=context_length,
                      vocab_size=state_dict['token_embedding.weight'].shape[0],
                      embed_dim=state_dict['text_projection'].shape[1])
        text = {k: v.float() for k, v in state_dict.items()
                if k in TEXT_KEYS or k.startswith('transformer.')}
        encoder.load_state_dict(text, strict=True)
        return encoder.eval()

    def forward(self, tokens: Tensor) -> Tensor:
        """Text features ``[N, embed_dim]`` (not normalised) of ``tokens``
        ``[N, context_length]`` as :func:`tokenize` returns them."""
        eot = tokens.argmax(dim=-1)  # end-of-text has the highest id
        length = int(eot.max()) + 1
        mask = _causal_mask(length).to(self.positional_embedding)
        for block in self.transformer.resblocks:
            block.attn_mask = mask
        x = self.token_embedding(tokens[:, :length])
        x = x + self.positional_embedding[:length]
        x = self.transformer(x.permute(1, 0, 2))[0].permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), eot] @ self.text_projection


@torch.no_grad()
def class_text_embeddings(encoder: CLIPTextEncoder, names: Sequence[str],
                          templates: Sequence[Callable[[str], str]],
                          device: Union[str, torch.device] = 'cpu',
                          progress: Optional[Callable[[int, int], None]] = None
                          ) -> Tensor:
    """``T``, ``[len(names), embed_dim]``: per class, the normalised mean
    over ``templates`` of the normalised text features of its prompts."""
    encoder = encoder.to(device)
    rows = []
    for index, name in enumerate(names):
        tokens = tokenize([template(name) for template in templates],
                          encoder.context_length).to(device)
        features = F.normalize(encoder(tokens), dim=-1)
        rows.append(F.normalize(features.mean(dim=0), dim=-1).cpu())
        if progress is not None:
            progress(index + 1, len(names))
    return torch.stack(rows)


def zero_shot_head(state_dict: Dict[str, Tensor], names: Sequence[str],
                   templates: Union[str, Sequence[Callable[[str], str]]]
                   = 'openai_imagenet',
                   device: Union[str, torch.device] = 'cpu',
                   source: str = 'the CLIP state dict',
                   progress: Optional[Callable[[int, int], None]] = None
                   ) -> Dict[str, Tensor]:
    """The zero-shot head of a CLIP state dict for the classes ``names``:
    ``{HEAD_WEIGHT: exp(logit_scale) * T @ visual.proj^T, HEAD_BIAS: 0}``
    in float32 (see the module docstring); ``templates`` is a set name of
    :func:`template_sets` or a list of callables."""
    if isinstance(templates, str):
        templates = get_templates(templates)
    if not names:
        raise ValueError('No class names given for the zero-shot head')
    if not templates:
        raise ValueError('No prompt templates given for the zero-shot head')
    encoder = CLIPTextEncoder.from_state_dict(state_dict, source)
    text = class_text_embeddings(encoder, names, templates, device, progress)
    proj = state_dict['visual.proj'].float()
    if proj.shape[1] != text.shape[1]:
        raise ValueError(f'{source}: visual.proj {tuple(proj.shape)} does '
                         f'not project to the text embedding width '
                         f'{text.shape[1]}')
    scale = state_dict['logit_scale'].float().exp()
    weight = (scale * text @ proj.T).contiguous()
    return {HEAD_WEIGHT: weight, HEAD_BIAS: torch.zeros(weight.shape[0])}


def check_head_shape(head: Dict[str, Tensor], num_classes: int,
                     in_channels: int, what: str = 'The zero-shot head'
                     ) -> None:
    """``ValueError`` naming the shapes when ``head`` is not the weight and
    bias of a ``in_channels -> num_classes`` linear head."""
    expected = {HEAD_WEIGHT: (num_classes, in_channels),
                HEAD_BIAS: (num_classes, )}
    got = {k: tuple(v.shape) for k, v in head.items()}
    if got != expected:
        raise ValueError(f'{what} has shapes {got}; the config\'s head '
                         f'(num_classes={num_classes}, in_channels='
                         f'{in_channels}) needs {expected}')


def check_class_count(names: Sequence[str], num_classes: int,
                      what: str = 'The class list') -> None:
    """``ValueError`` naming both counts when they differ."""
    if len(names) != num_classes:
        raise ValueError(f'{what} has {len(names)} names but the config\'s '
                         f'head has num_classes={num_classes}')
