"""A tiny model with OpenAI CLIP's module layout and parameter names.

Written here from the published architecture (``visual``: ``conv1`` without
bias, ``class_embedding``, ``positional_embedding``, ``ln_pre``,
``transformer.resblocks`` of ``nn.MultiheadAttention`` + QuickGELU MLP,
``ln_post``, ``proj``; plus text-tower tensors), so the converter is tested
against the real key names, shapes and forward maths, at toy size.
"""
from collections import OrderedDict

import torch
from torch import nn


class QuickGELU(nn.Module):

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):

    def __init__(self, width: int, heads: int, mlp_width: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ('c_fc', nn.Linear(width, mlp_width)),
            ('gelu', QuickGELU()),
            ('c_proj', nn.Linear(mlp_width, width)),
        ]))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x):  # (tokens, batch, width)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):

    def __init__(self, width, layers, heads, mlp_width):
        super().__init__()
        self.resblocks = nn.Sequential(*[
            ResidualAttentionBlock(width, heads, mlp_width)
            for _ in range(layers)
        ])

    def forward(self, x):
        return self.resblocks(x)


class VisionTransformer(nn.Module):

    def __init__(self, img_size, patch, width, layers, heads, mlp_width,
                 output_dim):
        super().__init__()
        grid = img_size // patch
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * 0.5)
        self.positional_embedding = nn.Parameter(
            torch.randn(grid * grid + 1, width) * 0.5)
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, mlp_width)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, output_dim))

    def features(self, x):
        """The class token after ``ln_post`` (before ``proj``)."""
        x = self.conv1(x).flatten(2).permute(0, 2, 1)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.ln_pre(x).permute(1, 0, 2)
        x = self.transformer(x).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :])


class TinyCLIP(nn.Module):
    """``visual`` plus a few text-tower tensors the converter must skip."""

    def __init__(self, img_size=32, patch=8, width=16, layers=2, heads=2,
                 mlp_width=32, output_dim=8):
        super().__init__()
        self.visual = VisionTransformer(img_size, patch, width, layers,
                                        heads, mlp_width, output_dim)
        self.token_embedding = nn.Embedding(10, output_dim)
        self.positional_embedding = nn.Parameter(torch.zeros(5, output_dim))
        self.ln_final = nn.LayerNorm(output_dim)
        self.logit_scale = nn.Parameter(torch.ones([]))
        # randomise the norms too, so a swapped name cannot go unnoticed
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.LayerNorm):
                    module.weight.normal_(1.0, 0.2)
                    module.bias.normal_(0.0, 0.2)

    def forward(self, image):
        return self.visual.features(image)
