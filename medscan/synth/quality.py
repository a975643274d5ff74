"""Quality of synthetic slices without downloaded weights: an encoder trained here, Fréchet distance, precision/recall.

The encoder is the slice-type classifier ``models/slice_type2d`` (``medscan.nets.classifier.SliceClassifier``,
conv blocks 16-32-64-128 on the 128 x 128 class grid, trained on the synthesis training slices only). Its
penultimate layer — the global average of the last block, 128 numbers — is the feature space; it is trained to tell
MR brain T1 / T1c / T2 / FLAIR, CT head, CT chest and CT abdomen apart, so its features encode the anatomy and
contrast that distinguish slice types, not ImageNet textures.

* Fréchet distance (as FID, on these features) between real held-out slices and generated ones.
* Precision / recall as in Kynkäänniemi et al. 2019: precision = fraction of generated samples inside the real
  manifold (union of k-NN balls around real features), recall = fraction of real samples inside the generated one.
"""

from __future__ import annotations

import numpy as np
import torch

from medscan.synth.data import CLASSES

# The classifier's types: MR brain is split by contrast so the features must see contrast, not only anatomy.
SLICE_TYPES = ("MR brain T1", "MR brain T1c", "MR brain T2", "MR brain FLAIR", "CT head", "CT chest", "CT abdomen")
ENCODER = "slice_type2d"


def slice_type(label: int, source: str) -> int:
    """The classifier's type index of a slice of synthesis class ``label`` read from ``source``."""
    name = CLASSES[label].name
    if name == "MR brain":
        contrast = source.rsplit("/", 1)[-1].split(".")[0].lower()
        return SLICE_TYPES.index({"t1": "MR brain T1", "t1c": "MR brain T1c", "t2": "MR brain T2",
                                  "flair": "MR brain FLAIR"}[contrast])
    return SLICE_TYPES.index(name)


def type_to_class(types: np.ndarray) -> np.ndarray:
    """Slice-type indices -> synthesis class indices (the four MR brain contrasts -> MR brain)."""
    names = [c.name for c in CLASSES]
    lookup = np.array([names.index(" ".join(t.split()[:2])) for t in SLICE_TYPES])
    return lookup[np.asarray(types)]


@torch.no_grad()
def encode(model: torch.nn.Module, images: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, D), predicted slice types (N,)) of slices (N, G, G) in the model's [-1, 1]."""
    feats, preds = [], []
    for start in range(0, len(images), batch):
        x = torch.from_numpy(np.asarray(images[start:start + batch], np.float32))[:, None]
        f = model.features(x)
        feats.append(f.numpy())
        preds.append(model.head(f).argmax(1).numpy())
    return np.concatenate(feats).astype(np.float64), np.concatenate(preds)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` (N, D) and ``b`` (M, D)."""
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.all(np.isfinite(covmean)):  # near-singular product: regularise as the FID reference code does
        offset = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = np.real(covmean)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    d = np.linalg.norm(features[:, None] - features[None], axis=-1)
    return np.sort(d, axis=1)[:, k]  # column 0 is the point itself


def _coverage(points: np.ndarray, manifold: np.ndarray, radii: np.ndarray) -> float:
    d = np.linalg.norm(points[:, None] - manifold[None], axis=-1)
    return float(np.mean((d <= radii[None]).any(axis=1)))


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls in feature space."""
    precision = _coverage(generated, real, _knn_radii(real, min(k, len(real) - 1)))
    recall = _coverage(real, generated, _knn_radii(generated, min(k, len(generated) - 1)))
    return precision, recall


def pca_gaussian_baseline(train: np.ndarray, count: int, components: int, seed: int) -> np.ndarray:
    """``count`` slices drawn from a Gaussian on the first ``components`` principal components of ``train`` pixels.

    The simple baseline a generator must beat: sample PCA coefficients with the training variances, reconstruct
    pixels, clip to [-1, 1]; the result is embedded with the same encoder as real and generated slices.
    """
    rng = np.random.default_rng(seed)
    flat = train.reshape(len(train), -1).astype(np.float64)
    mean = flat.mean(0)
    _, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
    n = min(components, len(s))
    std = s[:n] / np.sqrt(max(len(train) - 1, 1))
    coefficients = rng.standard_normal((count, n)) * std
    samples = mean + coefficients @ vt[:n]
    return np.clip(samples, -1, 1).reshape((count, *train.shape[1:])).astype(np.float32)


def gmm_pca_baseline(train: np.ndarray, count: int, components: int, mixtures: int, seed: int) -> np.ndarray:
    """A Gaussian mixture (diagonal, fitted by EM) on the PCA coefficients, sampled and decoded to pixels."""
    rng = np.random.default_rng(seed)
    flat = train.reshape(len(train), -1).astype(np.float64)
    mean = flat.mean(0)
    _, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
    n = min(components, len(s))
    z = (flat - mean) @ vt[:n].T
    m = min(mixtures, len(z))
    centres = z[rng.choice(len(z), m, replace=False)]
    variances = np.tile(z.var(0) + 1e-6, (m, 1))
    weights = np.full(m, 1.0 / m)
    for _ in range(50):
        log_p = (-0.5 * (((z[:, None] - centres[None]) ** 2) / variances[None] + np.log(variances[None])).sum(-1)
                 + np.log(weights[None]))
        log_p -= log_p.max(1, keepdims=True)
        resp = np.exp(log_p)
        resp /= resp.sum(1, keepdims=True)
        nk = resp.sum(0) + 1e-9
        weights = nk / nk.sum()
        centres = (resp.T @ z) / nk[:, None]
        variances = (resp.T @ (z ** 2)) / nk[:, None] - centres ** 2 + 1e-6
    which = rng.choice(m, size=count, p=weights)
    samples_z = centres[which] + rng.standard_normal((count, n)) * np.sqrt(variances[which])
    samples = mean + samples_z @ vt[:n]
    return np.clip(samples, -1, 1).reshape((count, *train.shape[1:])).astype(np.float32)
