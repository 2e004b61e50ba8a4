"""Pointwise and ensemble metrics of predicted fields against solver output.

Every function takes torch tensors on any device, in float32 or float64, casts them
to float64 before reducing, and returns float64 tensors on the input device. Fields
are laid out as ``(..., C, H, W)`` and ensembles put the member axis first, as
``(M, B, C, H, W)``.

Every function takes an optional ``mask``: a bool tensor over the trailing spatial
axes, for example ``(H, W)``, True at valid points. The metric is then computed
over the valid points alone, which are selected with ``values[..., mask]``, so
whatever the masked points hold (NaN included) never enters the result.
"""

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def _check_same_shape(prediction: Tensor, target: Tensor) -> None:
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction and target must have the same shape, got prediction shape "
            f"{tuple(prediction.shape)} and target shape {tuple(target.shape)}; "
            "broadcast or index them to matching shapes first"
        )


def _normalize_dims(dims: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if len(dims) == 0:
        raise ValueError("dims is empty, expected at least one axis to reduce over")
    for dim in dims:
        if not -ndim <= dim < ndim:
            raise ValueError(
                f"dims={dims} is out of range for a tensor with {ndim} dimensions; "
                f"expected axes in [-{ndim}, {ndim - 1}]"
            )
    normalized = tuple(dim % ndim for dim in dims)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"dims={dims} names the same axis twice")
    return normalized


def _select_valid(
    mask: Tensor | None, dims: tuple[int, ...], *tensors: Tensor
) -> tuple[tuple[int, ...], list[Tensor]]:
    """Select the valid points of each tensor and map ``dims`` to the result.

    ``dims`` are non-negative axes of the first tensor. The masked trailing axes
    become one axis of valid points, in row-major order.
    """
    if mask is None:
        return dims, list(tensors)
    ndim = tensors[0].ndim
    n_masked = mask.ndim
    shape = tuple(tensors[0].shape[ndim - n_masked :])
    if mask.dtype != torch.bool or n_masked == 0 or tuple(mask.shape) != shape:
        raise ValueError(
            f"mask has dtype {mask.dtype} and shape {tuple(mask.shape)}, expected "
            f"a bool tensor of the trailing spatial shape {shape} of the fields "
            f"{tuple(tensors[0].shape)}, True at valid points"
        )
    masked_axes = set(range(ndim - n_masked, ndim))
    if not masked_axes <= set(dims):
        raise ValueError(
            f"dims={dims} leaves some of the masked axes {sorted(masked_axes)} "
            "unreduced; with a mask, reduce over all of its axes"
        )
    kept = tuple(dim for dim in dims if dim not in masked_axes)
    selected = [values[..., mask.to(values.device)] for values in tensors]
    return (*kept, ndim - n_masked), selected


def relative_l2(
    prediction: Tensor,
    target: Tensor,
    dims: int | Sequence[int] = (-3, -2, -1),
    *,
    eps: float = 1e-12,
    mask: Tensor | None = None,
) -> Tensor:
    """Compute the relative L2 error ``||prediction - target|| / ||target||``.

    Parameters
    ----------
    prediction, target : Tensor
        Fields of the same shape, for example ``(B, C, H, W)``.
    dims : int or sequence of int, default ``(-3, -2, -1)``
        Axes the norms run over; one value is returned per index of the other axes.
    eps : float, default 1e-12
        Lower bound of the denominator, in the units of ``target``. Where ``target``
        is zero over ``dims`` the result is ``||prediction|| / eps``: zero when the
        prediction is zero as well, and a large finite number otherwise, so finite
        inputs never give NaN or infinity.
    mask : Tensor, optional
        Bool ``(H, W)`` (the trailing axes), True at valid points; the norms then
        run over the valid points only. ``dims`` must include every masked axis.

    Returns
    -------
    Tensor
        float64, the input shape without ``dims``, for example ``(B,)``.

    Raises
    ------
    ValueError
        If the shapes differ, ``dims`` is out of range, or ``mask`` does not fit.

    Examples
    --------
    >>> target = torch.randn(2, 1, 8, 8)
    >>> relative_l2(2 * target, target)
    tensor([1., 1.], dtype=torch.float64)
    """
    _check_same_shape(prediction, target)
    dims = _normalize_dims(dims, target.ndim)
    dims, (prediction, target) = _select_valid(mask, dims, prediction, target)
    target = target.to(torch.float64)
    error = prediction.to(torch.float64) - target
    error_norm = torch.linalg.vector_norm(error, dim=dims)
    target_norm = torch.linalg.vector_norm(target, dim=dims)
    return error_norm / target_norm.clamp_min(eps)


def rmse(
    prediction: Tensor,
    target: Tensor,
    dims: int | Sequence[int] = (-3, -2, -1),
    *,
    mask: Tensor | None = None,
) -> Tensor:
    """Compute the root-mean-square error over ``dims``.

    Parameters
    ----------
    prediction, target : Tensor
        Fields of the same shape, for example ``(B, C, H, W)``.
    dims : int or sequence of int, default ``(-3, -2, -1)``
        Axes the mean runs over.
    mask : Tensor, optional
        Bool ``(H, W)`` (the trailing axes), True at valid points; the mean then
        runs over the valid points only. ``dims`` must include every masked axis.

    Returns
    -------
    Tensor
        float64 in the units of ``target``, the input shape without ``dims``.

    Raises
    ------
    ValueError
        If the shapes differ, ``dims`` is out of range, or ``mask`` does not fit.
    """
    _check_same_shape(prediction, target)
    dims = _normalize_dims(dims, target.ndim)
    dims, (prediction, target) = _select_valid(mask, dims, prediction, target)
    error = prediction.to(torch.float64) - target.to(torch.float64)
    return error.square().mean(dim=dims).sqrt()


def pearson_correlation(
    prediction: Tensor,
    target: Tensor,
    dims: int | Sequence[int] = (-2, -1),
    *,
    mask: Tensor | None = None,
) -> Tensor:
    """Compute the Pearson correlation of two fields over ``dims``.

    Both fields are centred by their mean over ``dims`` first, so this is the
    "vorticity correlation" used to judge turbulence rollouts.

    Parameters
    ----------
    prediction, target : Tensor
        Fields of the same shape, for example ``(B, C, H, W)``.
    dims : int or sequence of int, default ``(-2, -1)``
        Axes the correlation runs over; the default gives one value per channel.
    mask : Tensor, optional
        Bool ``(H, W)`` (the trailing axes), True at valid points; means and sums
        then run over the valid points only. ``dims`` must include every masked
        axis.

    Returns
    -------
    Tensor
        float64 in ``[-1, 1]``, the input shape without ``dims``. It is NaN where
        either field is constant over ``dims``, because correlation is undefined.

    Raises
    ------
    ValueError
        If the shapes differ, ``dims`` is out of range, or ``mask`` does not fit.
    """
    _check_same_shape(prediction, target)
    dims = _normalize_dims(dims, target.ndim)
    dims, (prediction, target) = _select_valid(mask, dims, prediction, target)
    prediction = prediction.to(torch.float64)
    target = target.to(torch.float64)
    prediction = prediction - prediction.mean(dim=dims, keepdim=True)
    target = target - target.mean(dim=dims, keepdim=True)
    covariance = (prediction * target).sum(dim=dims)
    variances = prediction.square().sum(dim=dims) * target.square().sum(dim=dims)
    return covariance / variances.sqrt()


def _check_ensemble(ensemble: Tensor, target: Tensor, min_members: int) -> None:
    if ensemble.ndim != target.ndim + 1 or ensemble.shape[1:] != target.shape:
        raise ValueError(
            f"ensemble must have shape (M, *target.shape), got ensemble shape "
            f"{tuple(ensemble.shape)} and target shape {tuple(target.shape)}; "
            "put the ensemble members on the first axis"
        )
    if ensemble.shape[0] < min_members:
        raise ValueError(
            f"the ensemble has {ensemble.shape[0]} member(s), expected at least "
            f"{min_members}; sample more members"
        )


def ensemble_spread_skill(
    ensemble: Tensor, target: Tensor, *, mask: Tensor | None = None
) -> dict[str, Tensor]:
    """Compute the spread, the skill and their ratio for an ensemble forecast.

    For each batch element, ``spread`` is the square root of the grid mean of the
    unbiased variance over members, and ``skill`` is the RMSE of the ensemble mean.
    The ratio is ``sqrt((M + 1) / M) * spread / skill``, where the factor corrects
    for the finite ensemble. Take members and truth as independent draws from one
    distribution of variance ``s**2``. The unbiased variance then estimates ``s**2``,
    but the ensemble mean misses the truth with a mean squared error of
    ``s**2 * (1 + 1 / M)``, so the corrected ratio of such a reliable ensemble is 1.
    A ratio below 1 means an under-dispersed (overconfident) ensemble.

    Parameters
    ----------
    ensemble : Tensor
        ``(M, B, ...)`` with ``M >= 2`` members, for example ``(M, B, C, H, W)``.
    target : Tensor
        ``(B, ...)``, the solver output.
    mask : Tensor, optional
        Bool ``(H, W)`` (the trailing axes), True at valid points; the grid means
        then run over the valid points only.

    Returns
    -------
    dict of str to Tensor
        float64. ``"spread"``, ``"skill"`` and ``"ratio"`` have shape ``()`` and pool
        the variance and squared error over batch and grid before the square root.
        ``"spread_batch"``, ``"skill_batch"`` and ``"ratio_batch"`` have shape
        ``(B,)``, one value per batch element. A ratio is infinite or NaN where the
        skill is zero.

    Raises
    ------
    ValueError
        If ``ensemble`` is not ``(M, *target.shape)`` or has fewer than 2 members,
        or ``mask`` does not fit.
    """
    _check_ensemble(ensemble, target, min_members=2)
    all_axes = tuple(range(ensemble.ndim))
    _, (ensemble, target) = _select_valid(mask, all_axes, ensemble, target)
    n_members, n_batch = ensemble.shape[0], ensemble.shape[1]
    ensemble = ensemble.to(torch.float64).reshape(n_members, n_batch, -1)
    target = target.to(torch.float64).reshape(n_batch, -1)

    # grid means per batch element, shape (B,)
    variance = ensemble.var(dim=0, correction=1).mean(dim=-1)
    squared_error = (ensemble.mean(dim=0) - target).square().mean(dim=-1)

    correction = math.sqrt((n_members + 1) / n_members)
    spread_batch, skill_batch = variance.sqrt(), squared_error.sqrt()
    spread, skill = variance.mean().sqrt(), squared_error.mean().sqrt()
    return {
        "spread": spread,
        "skill": skill,
        "ratio": correction * spread / skill,
        "spread_batch": spread_batch,
        "skill_batch": skill_batch,
        "ratio_batch": correction * spread_batch / skill_batch,
    }


def crps_ensemble(
    ensemble: Tensor, target: Tensor, fair: bool = True, *, mask: Tensor | None = None
) -> Tensor:
    """Compute the pointwise continuous ranked probability score of an ensemble.

    The score is ``mean_i |x_i - y| - sum_ij |x_i - x_j| / (2 * D)`` with
    ``D = M * (M - 1)`` for the fair (unbiased) estimator and ``D = M**2`` for the
    standard energy-form estimator. The double sum is computed from the sorted
    members as ``2 * sum_i (2 * i - M + 1) * x_(i)`` (``i = 0 .. M-1``), so the cost
    is ``O(M log M)`` per point and the memory ``O(M)``.

    Parameters
    ----------
    ensemble : Tensor
        ``(M, ...)``, members on the first axis, for example ``(M, B, C, H, W)``.
    target : Tensor
        ``(...)``, the solver output, in the units of ``ensemble``.
    fair : bool, default True
        Use the fair estimator, which needs ``M >= 2``. The fair score of an
        ensemble does not depend on ``M`` in expectation, so ensembles of different
        sizes can be compared.
    mask : Tensor, optional
        Bool ``(H, W)`` (the trailing axes), True at valid points; only the valid
        points are scored.

    Returns
    -------
    Tensor
        float64 in the units of ``target``, shape of ``target``. With a mask, the
        masked axes are replaced by one axis of the valid points in row-major
        order, for example ``(B, C, n_valid)``. Average it over the axes you need.

    Raises
    ------
    ValueError
        If ``ensemble`` is not ``(M, *target.shape)``, ``fair`` is set and
        ``M < 2``, or ``mask`` does not fit.
    """
    _check_ensemble(ensemble, target, min_members=2 if fair else 1)
    all_axes = tuple(range(ensemble.ndim))
    _, (ensemble, target) = _select_valid(mask, all_axes, ensemble, target)
    n_members = ensemble.shape[0]
    ensemble = ensemble.to(torch.float64)
    target = target.to(torch.float64)

    absolute_error = (ensemble - target).abs().mean(dim=0)
    members_sorted = ensemble.sort(dim=0).values
    weights = 2.0 * torch.arange(n_members, dtype=torch.float64, device=target.device)
    weights = (weights - n_members + 1).reshape(-1, *([1] * target.ndim))
    pair_sum = 2.0 * (weights * members_sorted).sum(dim=0)

    denominator = n_members * (n_members - 1) if fair else n_members**2
    return absolute_error - pair_sum / (2.0 * denominator)
