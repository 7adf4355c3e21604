"""Comparisons of float32 results whose tolerance comes from float32 rounding itself."""
import numpy as onp

EPS32 = float(onp.finfo(onp.float32).eps)  # 1.19e-7, float32's relative spacing
#: A relative input change of 2**-20 is 8 float32 ulps: the size of the differences that
#: another kernel or summation order leaves in a layer's features.
ROUNDING_NOISE = 2.0 ** -20


def worst(a, b):
    """Largest absolute difference over pairs of arrays."""
    return max(float(abs(x - z).max()) for x, z in zip(a, b, strict=True))


def perturbed(X, seed=7):
    """`X` (an mxnet numpy array) times 1 + ROUNDING_NOISE * u, u uniform in [-1, 1]."""
    from mxnet import np
    u = onp.random.RandomState(seed).uniform(-1, 1, X.shape).astype(X.dtype)
    return X * (1 + ROUNDING_NOISE * np.array(u, dtype=X.dtype, ctx=X.ctx))


def beyond_rounding(got, ref, ref_perturbed, factor=5.0):
    """Indices of the tensors of `got` whose distance from `ref` rounding does not explain.

    `ref_perturbed` is the reference computation on an input perturbed by
    ROUNDING_NOISE, so |ref_perturbed - ref| is how far rounding-sized changes
    move each result: small where the computation is well conditioned, large
    where it is not (a BatchNorm over a few values, gradients that are small
    sums of large terms). Comparing with float64 instead would not do: there
    the reference's own float32 error may happen to be small in the direction
    that matters. Another summation order measured up to 2.4 times that spread
    (AVX2 and AVX-512 kernels, two models, two sizes); `factor` 5 leaves
    room, plus a floor of 8 ulps of the tensor's largest entry.
    """
    bad = []
    for i, (g, r, p) in enumerate(zip(got, ref, ref_perturbed, strict=True)):
        spread = float(abs(p - r).max())
        if float(abs(g - r).max()) > factor * spread + 8 * EPS32 * float(abs(r).max()):
            bad.append(i)
    return bad
