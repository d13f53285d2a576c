"""Training objectives for a picker that sees few, sparse positive labels.

Every output pixel of a minibatch carries a label: ``POSITIVE`` (within the training radius
of a labelled centre), ``UNLABELED`` (everything else), ``NEGATIVE`` (a click that says
"not a particle") or ``IGNORE``. Each objective is a small strategy object whose
``loss(logits, labels)`` returns the loss to minimise and a dict of its parts for
progress reports.

- ``PN``: unlabelled pixels are taken as negatives (the naive baseline).
- ``GE-binomial`` (Bepler et al. 2019, the Topaz default): cross-entropy on the positives, plus
  a generalised-expectation penalty that asks the number of positives the classifier
  predicts among unlabelled pixels to follow Binomial(N, pi).
- ``GE-KL``: the penalty is KL(Bernoulli(pi) || Bernoulli(mean prediction)).
- ``NNPU`` (Kiryo et al. 2017): unbiased PU risk with the non-negative correction.

Labelled negatives, which Topaz never shipped, enter every objective the same way: an
ordinary cross-entropy towards 0 on their pixels, while the rest stays unlabelled.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

POSITIVE, UNLABELED, NEGATIVE, IGNORE = 1, 0, 2, -1
OBJECTIVES = ("ge-binomial", "ge-kl", "nnpu", "pn")

#: Unlabelled pixels in one Topaz minibatch (256 crops, 1/16 of them positive). The
#: GE-binomial penalty is evaluated at this N, with the mean and variance estimated from
#: every unlabelled pixel of our (much larger) minibatch; see GEBinomial.
TOPAZ_UNLABELED_PER_MINIBATCH = 240


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    if logits.numel() == 0:
        return logits.sum()  # zero that keeps the graph
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class Objective:
    """Base: splits a minibatch by label and handles the labelled negatives."""

    name = ""

    def __init__(self, pi: float, negative_weight: float = 1.0) -> None:
        if not 0.0 < pi < 1.0:
            raise ValueError(f"pi must be between 0 and 1, got {pi}")
        self.pi = float(pi)
        self.negative_weight = negative_weight

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        logits = logits.reshape(-1)
        labels = labels.reshape(-1)
        pos = logits[labels == POSITIVE]
        unl = logits[labels == UNLABELED]
        neg = logits[labels == NEGATIVE]
        total, parts = self._pu_loss(pos, unl)
        if neg.numel():
            neg_loss = _bce(neg, 0.0)
            total = total + self.negative_weight * neg_loss
            parts["negative_loss"] = float(neg_loss.detach())
        parts["loss"] = float(total.detach())
        return total, parts

    def _pu_loss(self, pos: torch.Tensor, unl: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError


class PN(Objective):
    """Positives vs. everything else as negatives, weighted by pi."""

    name = "pn"

    def _pu_loss(self, pos, unl):
        lp, lu = _bce(pos, 1.0), _bce(unl, 0.0)
        return self.pi * lp + (1 - self.pi) * lu, {"positive_loss": float(lp.detach())}


class GEBinomial(Objective):
    """Cross-entropy on positives + slack x GE penalty on the unlabelled pixels.

    The predicted positive count among ``N`` unlabelled pixels is approximately Normal with
    mean ``sum p`` and variance ``sum p (1 - p)``; the penalty is its KL divergence from the
    Normal approximation of Binomial(N, pi), as in Topaz. A Topaz minibatch holds about 240
    unlabelled pixels drawn from all over the micrographs; ours holds tens of thousands,
    and neighbouring pixels are far from independent. Evaluating the penalty at N = 240,
    with the mean and variance per pixel estimated from all our unlabelled pixels, keeps
    Topaz's balance between the two terms (and so its tolerance of an inexact pi) while
    using every pixel to estimate it.
    """

    name = "ge-binomial"

    def __init__(self, pi: float, slack: float = 1.0, n: int = TOPAZ_UNLABELED_PER_MINIBATCH, negative_weight: float = 1.0):
        super().__init__(pi, negative_weight)
        self.slack = slack
        self.n = n

    def _pu_loss(self, pos, unl):
        lp = _bce(pos, 1.0)
        if unl.numel() == 0:
            return lp, {"positive_loss": float(lp.detach()), "ge_penalty": 0.0}
        p = torch.sigmoid(unl)
        q_mu = self.n * p.mean()
        q_var = self.n * (p * (1 - p)).mean() + 1e-8
        b_mu = self.n * self.pi
        b_var = self.n * self.pi * (1 - self.pi)
        kl = 0.5 * (q_var / b_var + (q_mu - b_mu) ** 2 / b_var + torch.log(b_var / q_var) - 1.0)
        return lp + self.slack * kl, {"positive_loss": float(lp.detach()), "ge_penalty": float(kl.detach())}


class GEKL(Objective):
    """Cross-entropy on positives + slack x KL(Bernoulli(pi) || Bernoulli(mean p))."""

    name = "ge-kl"

    def __init__(self, pi: float, slack: float = 10.0, negative_weight: float = 1.0):
        super().__init__(pi, negative_weight)
        self.slack = slack

    def _pu_loss(self, pos, unl):
        lp = _bce(pos, 1.0)
        if unl.numel() == 0:
            return lp, {"positive_loss": float(lp.detach()), "ge_penalty": 0.0}
        p_hat = torch.sigmoid(unl).mean().clamp(1e-7, 1 - 1e-7)
        pi = self.pi
        entropy = pi * math.log(pi) + (1 - pi) * math.log1p(-pi)
        ge = -pi * torch.log(p_hat) - (1 - pi) * torch.log1p(-p_hat) + entropy
        return lp + self.slack * ge, {"positive_loss": float(lp.detach()), "ge_penalty": float(ge.detach())}


class NNPU(Objective):
    """Non-negative PU risk: pi R_p^+ + max(-beta, R_u^- - pi R_p^-)."""

    name = "nnpu"

    def __init__(self, pi: float, beta: float = 0.0, negative_weight: float = 1.0):
        super().__init__(pi, negative_weight)
        self.beta = beta

    def _pu_loss(self, pos, unl):
        r_pp = _bce(pos, 1.0)
        r_pn = _bce(pos, 0.0)
        r_un = _bce(unl, 0.0)
        r_u = r_un - self.pi * r_pn
        if float(r_u.detach()) < -self.beta:
            # The unlabelled risk went negative (overfitting): step back along it, as the
            # NNPU paper recommends, instead of descending further.
            return -r_u, {"positive_loss": float(r_pp.detach()), "unlabeled_risk": float(r_u.detach())}
        return self.pi * r_pp + r_u, {"positive_loss": float(r_pp.detach()), "unlabeled_risk": float(r_u.detach())}


def make_objective(name: str, pi: float, **kwargs) -> Objective:
    classes = {"ge-binomial": GEBinomial, "ge-kl": GEKL, "nnpu": NNPU, "pn": PN}
    key = name.lower().replace("_", "-")
    if key not in classes:
        raise ValueError(f"unknown objective {name!r}; expected one of {OBJECTIVES}")
    return classes[key](pi, **kwargs)


def disc_pixels(radius: float) -> int:
    """Pixels within ``radius`` of a pixel centre, in 2-D (Topaz 0.3.20 counts a 3-D ball)."""
    r = int(math.floor(radius))
    return sum(1 for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dx * dx + dy * dy <= radius * radius)


def pi_from_expected(particles_per_micrograph: float, radius: float, pixels_per_micrograph: float) -> float:
    """The fraction of pixels that are positive when each particle marks a disc of ``radius``."""
    pi = particles_per_micrograph * disc_pixels(radius) / pixels_per_micrograph
    if not 0 < pi < 1:
        raise ValueError(
            f"{particles_per_micrograph:g} particles of radius {radius:g} px cannot fit a micrograph of "
            f"{pixels_per_micrograph:g} px"
        )
    return pi
