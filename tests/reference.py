"""Float64 reference implementations written straight from SPD.md.

Deliberately naive (Python ``if`` on values, one tensor at a time): they are
the ground truth the optimizers are tested against, not fast code.
"""
import math
from typing import List, Optional

import torch


class ReferenceAdamAnchored:
    """Adam with per-tensor anchors; subclasses define the pull."""

    def __init__(self, params: List[torch.Tensor], *, lr, betas=(0.9, 0.999),
                 eps=1e-8, weight_decay=0.0, amsgrad=False,
                 zero_anchor=False, anchor_dtype=None):
        self.params = [p.detach().clone().double() for p in params]
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.lam, self.amsgrad, self.zero_anchor = (weight_decay, amsgrad,
                                                    zero_anchor)
        self.anchor_dtype = anchor_dtype  # anchors rounded to this dtype
        self.state = [None] * len(params)
        self.fired = 0  # SPD: projections that changed the proposal

    def _adam_proposal(self, i, p, g):
        s = self.state[i]
        s['t'] += 1
        t = s['t']
        s['m'] = self.b1 * s['m'] + (1 - self.b1) * g
        s['v'] = self.b2 * s['v'] + (1 - self.b2) * g * g
        s['vmax'] = torch.maximum(s['vmax'], s['v'])
        v = s['vmax'] if self.amsgrad else s['v']
        denom = v.sqrt() / math.sqrt(1 - self.b2**t) + self.eps
        return p - self.lr / (1 - self.b1**t) * s['m'] / denom

    def step(self, grads: List[Optional[torch.Tensor]]) -> None:
        for i, g in enumerate(grads):
            if g is None:
                continue
            g = g.double()
            p = self.params[i]
            if self.state[i] is None:
                self.state[i] = dict(
                    t=0, m=torch.zeros_like(p), v=torch.zeros_like(p),
                    vmax=torch.zeros_like(p),
                    anchor=torch.zeros_like(p) if self.zero_anchor else
                    p.clone() if self.anchor_dtype is None else
                    p.to(self.anchor_dtype).double())
            self.params[i] = self._update(i, p, g, self.state[i]['anchor'])

    def _update(self, i, p, g, a):
        raise NotImplementedError


class ReferenceAdamSPD(ReferenceAdamAnchored):

    def _update(self, i, p, g, a):
        q = self._adam_proposal(i, p, g)
        c = -float((g * (p - a)).sum())
        if c < 0:
            q_dist = float(torch.linalg.vector_norm(q - a))
            p_dist = float(torch.linalg.vector_norm(p - a))
            r = 0.0 if q_dist == 0 else min(max(
                (q_dist - p_dist) / q_dist, 0.0), 1.0)
            if r > 0:
                self.fired += 1
            q = q - self.lam * r * (q - a)
        return q


class ReferenceAdamL2SP(ReferenceAdamAnchored):

    def _update(self, i, p, g, a):
        return self._adam_proposal(i, p, g + self.lam * (p - a))
