"""MAML's inner loop (REFERENCE §3.2), shared by MAML, MMAML (FiLM) and MMAML+KML.

The modulation is computed once per task and held fixed; the inner loop adapts the backbone's parameters
(conv W, b and the head) only, with the modulated kernel recomputed from the fast W at every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from kml.config import MAMLConfig
from kml.methods.base import MetaLearner
from kml.models.backbone import LayerModulation


class MAML(MetaLearner):
    def __init__(self, *args, config: MAMLConfig, **kwargs):
        super().__init__(*args, **kwargs)
        self.config = config

    def adapt(
        self, support_x: Tensor, support_y: Tensor, modulation: list[LayerModulation] | None
    ) -> dict[str, Tensor]:
        """The backbone's fast weights after `inner_steps` clamped SGD steps on the support loss.

        Training with gradients enabled: the fast weights stay functions of the meta-parameters, through
        second-order terms unless `first_order`. Otherwise (evaluation, or no outer gradient wanted) every
        step starts from detached weights, so no graph outlives one step; gradients w.r.t. the fast weights
        are still needed, hence `enable_grad` (the evaluator may run under `torch.no_grad`).
        """
        differentiable = self.training and torch.is_grad_enabled()
        create_graph = differentiable and not self.config.first_order
        fast = dict(self.backbone.named_parameters())
        with torch.enable_grad():
            for _ in range(self.config.inner_steps):
                if not differentiable:
                    fast = {name: weight.detach().requires_grad_() for name, weight in fast.items()}
                logits = functional_call(self.backbone, fast, (support_x, modulation))
                loss = F.cross_entropy(logits, support_y)
                grads = torch.autograd.grad(loss, tuple(fast.values()), create_graph=create_graph)
                if self.config.grad_clamp > 0:
                    grads = [grad.clamp(-self.config.grad_clamp, self.config.grad_clamp) for grad in grads]
                steps = zip(fast.items(), grads, strict=True)
                fast = {name: weight - self.config.inner_lr * grad for (name, weight), grad in steps}
        if not differentiable:
            fast = {name: weight.detach() for name, weight in fast.items()}
        return fast

    def query_logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        support_modulation, query_modulation = self.task_modulations(support_x, query_x)
        fast = self.adapt(support_x, support_y, support_modulation)
        return functional_call(self.backbone, fast, (query_x, query_modulation))
