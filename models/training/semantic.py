"""The semantic term: colours that keep a photo recognisable to a frozen ImageNet classifier.

The rebalanced cross-entropy judges each pixel alone, so it cannot tell a plausible colouring
from one that makes a dog look like a fox. This term colours each training view with the
network's own prediction (the plain mean of its bin distribution, upsampled to the view and
joined to the view's L), and asks a frozen classifier to see in it what it sees in the same view
coloured with the truth: the KL divergence between the classifier's two distributions. The
classifier is EfficientNet-Lite0, not the Lite2 that ``colorize eval`` judges by, so the judge
stays an outside opinion.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.training.encoder import pixels_to_encoder_input, pretrained_classifier
from shared.colour.bins import ab_bins
from shared.colour.lab_join import D65_WHITE, XYZ_TO_RGB

_DELTA = 6.0 / 29.0


def lab_to_rgb(l: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) L in 0..100 and (N, 2, H, W) ab -> (N, 3, H, W) sRGB in 0..1, differentiable,
    with the constants of OpenCV's float conversion."""
    fy = (l + 16.0) / 116.0
    f = torch.cat([fy + ab[:, :1] / 500.0, fy, fy - ab[:, 1:] / 200.0], dim=1)
    linear_f = 3 * _DELTA**2 * (f - 4.0 / 29.0)
    xyz = torch.where(f > _DELTA, f**3, linear_f) * f.new_tensor(D65_WHITE).view(1, 3, 1, 1)
    rgb = torch.einsum("rc,nchw->nrhw", f.new_tensor(XYZ_TO_RGB), xyz).clamp(0.0, 1.0)
    # pow's gradient at 0 is infinite: the linear segment covers the values below its threshold
    curved = 1.055 * rgb.clamp(min=0.0031308) ** (1 / 2.4) - 0.055
    return torch.where(rgb > 0.0031308, curved, 12.92 * rgb)


class SemanticTerm(nn.Module):
    """(L - 50 view, logits at 1/4, target ab at 1/4) -> KL(classifier on truth || on prediction)."""

    bins: torch.Tensor

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier.eval()
        for parameter in self.classifier.parameters():
            parameter.requires_grad_(False)
        self.register_buffer("bins", torch.from_numpy(ab_bins().astype("float32")))

    @classmethod
    def pretrained(cls, variant: str = "lite0") -> SemanticTerm:
        return cls(pretrained_classifier(variant))

    def forward(self, l_centred: torch.Tensor, logits: torch.Tensor, target_ab: torch.Tensor) -> torch.Tensor:
        size = l_centred.shape[-2:]
        mean_ab = torch.einsum("nqhw,qc->nchw", torch.softmax(logits.float(), dim=1), self.bins)
        predicted = self._log_probabilities(l_centred, F.interpolate(mean_ab, size, mode="bilinear"))
        with torch.no_grad():
            truth = self._log_probabilities(l_centred, F.interpolate(target_ab.float(), size, mode="bilinear"))
        return F.kl_div(predicted, truth, log_target=True, reduction="batchmean")

    def train(self, mode: bool = True) -> SemanticTerm:
        super().train(mode)
        self.classifier.eval()  # frozen: its normalisation statistics and no dropout, always
        return self

    def _log_probabilities(self, l_centred: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        rgb = lab_to_rgb(l_centred.float() + 50.0, ab)
        return torch.log_softmax(self.classifier(pixels_to_encoder_input(rgb * 255.0)).float(), dim=1)
