"""MAML's inner loop (docs/specification.md §5.1), shared by MAML, MMAML (FiLM) and MMAML+KML.

The modulation is computed once per task and held fixed; the inner loop adapts the backbone's parameters
(conv W, b and the head) only, with the modulated kernel recomputed from the fast W at every step.

The inner gradient is taken with `torch.func.grad`, not `torch.autograd.grad`: it composes with
`torch.func.vmap`, so a meta-batch's tasks can adapt together (kml/execution.py), and its result
stays differentiable w.r.t. everything outside the transform, which gives the second-order meta-gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad

from kml.methods.base import MetaLearner
from kml.models.backbone import LayerModulation


class MAML(MetaLearner):
    def __init__(self, *args, inner_steps: int, inner_lr: float, grad_clamp: float, first_order: bool,
                 **kwargs):
        """`grad_clamp`: element-wise clamp of the inner-loop gradients, 0 for none; `first_order`: no
        second-order terms in the meta-gradient."""
        super().__init__(*args, **kwargs)
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr
        self.grad_clamp = grad_clamp
        self.first_order = first_order

    def _support_loss(
        self, fast: dict[str, Tensor], support_x: Tensor, support_y: Tensor,
        modulation: list[LayerModulation] | None,
    ) -> Tensor:
        logits = functional_call(self.backbone, fast, (support_x, modulation))
        return F.cross_entropy(logits, support_y)

    def adapt(
        self, support_x: Tensor, support_y: Tensor, modulation: list[LayerModulation] | None
    ) -> dict[str, Tensor]:
        """The backbone's fast weights after `inner_steps` clamped SGD steps on the support loss.

        Training with gradients enabled: the fast weights stay functions of the meta-parameters, through
        second-order terms unless `first_order`. Otherwise (evaluation, or no outer gradient wanted) the
        weights start detached and no graph is kept. `torch.func.grad` computes the inner gradient even
        under an outer `torch.no_grad` (the evaluator's), and an outer `no_grad` around it is how the
        first-order and evaluation cases keep the gradient itself out of the outer graph.
        """
        differentiable = self.training and torch.is_grad_enabled()
        second_order = differentiable and not self.first_order
        fast = dict(self.backbone.named_parameters())
        if not differentiable:
            fast = {name: weight.detach() for name, weight in fast.items()}
        for _ in range(self.inner_steps):
            with torch.set_grad_enabled(second_order):
                grads = grad(self._support_loss)(fast, support_x, support_y, modulation)
            if self.grad_clamp > 0:
                grads = {name: g.clamp(-self.grad_clamp, self.grad_clamp) for name, g in grads.items()}
            fast = {name: weight - self.inner_lr * grads[name] for name, weight in fast.items()}
        return fast

    def query_logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        support_modulation, query_modulation = self.task_modulations(support_x, query_x)
        fast = self.adapt(support_x, support_y, support_modulation)
        return functional_call(self.backbone, fast, (query_x, query_modulation))
