"""Exact posteriors: the network's answer corrected by the emulator likelihood.

Neural importance sampling (as DINGO-IS does for gravitational waves, Dax et al. 2023): for each
spectrum, ``n_samples`` labels are drawn in ``rounds`` rounds, the first from a heavy-tailed
proposal built from the network's output — a Student-t with ``nu`` degrees of freedom centred on
the predicted means, with scale ``inflate`` × the predicted σ of each label — and each later one
from a Student-t fitted to the weighted samples so far (``refit_inflate`` × their σ); all are
weighted by

    w ∝ prior(θ) × L(y | θ) / q(θ),

``q`` the mixture of the rounds' proposals (each in proportion to its samples),

the likelihood being the emulator's, ``y ~ N(c(x) f(θ), σ²)``, with the continuum ``c`` — the flux
amplitude, or for a model that divides its input by its continuum that polynomial — marginalised
analytically (:mod:`specvit.inference.likelihood`, so the flux unit and scale do not matter).
Where a polynomial is marginalised, the emulator's own continuum is held at the proposal's centre:
what it changes between samples is smooth and the polynomial takes it up, so the model flux is
linear in the emulator's 20 design terms, and a sample costs a quadratic form
(:class:`~specvit.inference.likelihood.LinearLikelihood`) instead of a pass over the pixels
(``tests/test_exact.py`` holds the posterior to the full emulator's). The
self-normalised weights give the posterior mean, σ and the covariance of the labels under the
emulator, the prior and the noise model — the Bayes answer where the weights are well spread — and
the effective sample size ``ESS = (Σw)² / Σw²``, a per-star measure of how far the network's answer
is from the likelihood's. The σ and covariance returned are those of the estimate: the
posterior's, plus the sampling error of its weighted mean (the posterior covariance / ESS), so
that they describe how far the returned mean lies from the truth.

Where the ESS is small the correction cannot be trusted: too few samples carry the weight. The
result then says so (:attr:`ImportancePosterior.min_ess`; ``predict``'s ``LOW_ESS`` flag) and the
documented fall-backs are more samples or the grid posterior,
:class:`specvit.bounds.PosteriorMean`. The ESS measures only the disagreement between network and
likelihood; a spectrum the emulator cannot describe at all (data against model) is the χ² test's
to flag (:mod:`specvit.inference.physics`).

Known traps, designed around: the ESS comes from all samples of a spectrum, never from a pilot
batch (which overstates it); samples outside the prior's support get weight zero (never NaN),
and a spectrum whose samples all fall outside gets ESS 0 and NaN estimates, not an error.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from specvit.bounds.bayes import student_t_logpdf
from specvit.bounds.fisher import check_continuum_order
from specvit.bounds.prior import LabelPrior
from specvit.config import SpecViTConfig
from specvit.inference.likelihood import (
    LinearLikelihood,
    Reference,
    best_fit_chi2,
    continuum_basis,
    design_products,
)
from specvit.inference.physics import PhysicalContext, emulator_mismatch
from specvit.instrument.lsf import MR_RESOLUTION, MR_RESOLVING_POWERS
from specvit.instrument.telluric import TELLURIC_BANDS, telluric_band_masks
from specvit.labels import LABEL_NAMES

__all__ = [
    "LSF_DELTA_CHI2",
    "RETRY_FLOOR",
    "ExactCorrection",
    "ExactModeError",
    "ExactPosterior",
    "ImportancePosterior",
    "exact_mismatch",
]

Model = Callable[[torch.Tensor], torch.Tensor]

#: A spectrum's likelihood takes the emulator at another resolving power of the MR arm's spread
#: than the design one only where it fits the spectrum better by more than this χ² (a 2σ
#: preference), at the network's labels. Of the thresholds tried on the realism and the ideal
#: test sets, 25 (5σ) left most stars observed at R 4000 on the design LSF, and 0 (always the
#: best fit) cost [M/H] efficiency at low S/N on the ideal set.
LSF_DELTA_CHI2 = 4.0
#: A retry's proposal σ is at least this fraction of the first proposal's (the network's σ): the
#: weighted samples of a spectrum with a few effective samples say little about the width.
RETRY_FLOOR = 0.25


@dataclass(frozen=True)
class ExactPosterior:
    """Posterior summaries per spectrum from :class:`ImportancePosterior`.

    Attributes
    ----------
    mean, std : torch.Tensor
        ``(N, P)`` posterior mean of each label, and the standard deviation of its error: the
        posterior's, with the sampling error of the weighted mean (NaN where the ESS is 0).
    cov : torch.Tensor
        ``(N, P, P)`` the posterior covariance times ``1 + 1/ESS``: the covariance of the mean's
        error.
    ess : torch.Tensor
        ``(N,)`` effective sample size, between 0 and the number of samples.
    samples, log_weights : torch.Tensor or None
        ``(N, K, P)`` the labels drawn and ``(N, K)`` their normalised log weights (``-inf``
        outside the prior), when asked for.
    """

    mean: torch.Tensor
    std: torch.Tensor
    cov: torch.Tensor
    ess: torch.Tensor
    samples: torch.Tensor | None = None
    log_weights: torch.Tensor | None = None


class ImportancePosterior:
    """The posterior of the labels under a spectral model, with a network's answer as proposal.

    Parameters
    ----------
    model : callable
        Row-wise ``(M, P) -> (M, L)`` noiseless flux on the spectra's pixels (any
        normalisation), e.g. :class:`specvit.emulator.Emulator`.
    prior : LabelPrior
        Prior over the model's ``P`` labels, in the model's label order.
    n_samples : int
        Importance samples per spectrum.
    nu : float
        Degrees of freedom of the Student-t proposal (heavy tails cover a network that is off).
    inflate : float
        The first proposal's scale over the network's σ.
    refit_inflate : float
        Each later round's proposal scale over the weighted samples' σ (they describe the
        posterior already; the Student-t's tails cover what they miss).
    min_ess : float
        ESS below which a result is not trusted (:meth:`low_ess`).
    rounds : int
        Rounds the samples are drawn in: the first from the network's proposal, each later one
        from a Student-t fitted to the weighted samples so far (their mean, ``refit_inflate`` ×
        their σ), all weighted in the end against the mixture of the rounds' proposals.
    chunk : int
        Spectra processed together (memory ≈ ``chunk × n_samples × L × 12`` bytes).
    continuum_order : int
        K ≥ 0: the flux is the model's times a Legendre polynomial of degree K across the
        pixels, marginalised with the amplitude
        (:func:`specvit.inference.likelihood.whitened_loglike`); 0: the amplitude alone. With
        K > 0 and a model that has a ``continuum`` and ``normalised_weights`` (the emulator),
        the model's continuum is held at the proposal's centre
        (:class:`specvit.inference.likelihood.LinearLikelihood`).
    retries : int
        Times a spectrum whose ESS is below ``min_ess`` (but above 0) is sampled again, all
        rounds, from a proposal centred on its posterior so far (mean and σ) instead of the
        network's answer, keeping the run with the larger ESS: where the posterior is far
        narrower than the network's σ (bright stars) few of the first samples fall in it.

    Raises
    ------
    ValueError
        For ``n_samples < 2``, ``nu ≤ 0``, ``inflate ≤ 0``, ``refit_inflate ≤ 0``,
        ``min_ess < 0``, ``chunk < 1``,
        ``continuum_order < 0`` or ``retries < 0``.
    """

    def __init__(
        self,
        model: Model,
        prior: LabelPrior,
        *,
        n_samples: int = 256,
        nu: float = 4.0,
        inflate: float = 1.5,
        refit_inflate: float = 1.2,
        min_ess: float = 10.0,
        rounds: int = 3,
        chunk: int = 8,
        continuum_order: int = 0,
        retries: int = 1,
    ) -> None:
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
            raise ValueError(f"n_samples must be an integer ≥ 2, got {n_samples!r}")
        for name, value in (("nu", nu), ("inflate", inflate), ("refit_inflate", refit_inflate)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not (math.isfinite(min_ess) and min_ess >= 0):
            raise ValueError(f"min_ess must be a finite number ≥ 0, got {min_ess!r}")
        if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= n_samples:
            raise ValueError(f"rounds must be an integer in [1, n_samples], got {rounds!r}")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be an integer ≥ 1, got {chunk!r}")
        self.continuum_order = check_continuum_order(continuum_order)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an integer ≥ 0, got {retries!r}")
        self.retries = retries
        self.model, self.prior = model, prior
        self.n_samples, self.nu, self.inflate = n_samples, float(nu), float(inflate)
        self.refit_inflate = float(refit_inflate)
        self.min_ess, self.rounds, self.chunk = float(min_ess), rounds, chunk

    def likelihood(
        self,
        y: torch.Tensor,
        w: torch.Tensor,
        f0: torch.Tensor,
        background: torch.Tensor | None = None,
    ) -> Reference:
        """The likelihood's :class:`~specvit.inference.likelihood.Reference` for ``(n, L)``
        float64 flux ``y`` and inverse variance ``w`` (0: unused) about model fluxes ``f0``,
        with this sampler's continuum and the additive ``background`` terms (as in
        :meth:`__call__`)."""
        basis = continuum_basis(y.shape[-1], self.continuum_order)
        return Reference(y, w, f0, basis, background)

    def low_ess(self, posterior: ExactPosterior) -> torch.Tensor:
        """``(N,)`` bool: the spectra whose ESS is below :attr:`min_ess`."""
        return posterior.ess < self.min_ess

    def __call__(
        self,
        flux: torch.Tensor,
        sigma: torch.Tensor,
        mean: torch.Tensor,
        std: torch.Tensor,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        *,
        background: torch.Tensor | None = None,
        return_samples: bool = False,
    ) -> ExactPosterior:
        """The posterior of each spectrum, from the network's ``mean`` and ``std``.

        Parameters
        ----------
        flux, sigma : torch.Tensor
            ``(N, L)`` observed flux and its 1σ on the model's pixels (``inf`` or ``nan`` σ, or
            a non-finite flux, masks a pixel).
        mean, std : torch.Tensor
            ``(N, P)`` the network's predicted means and σ (the proposal), in the model's label
            order and units.
        generator : torch.Generator or sequence of torch.Generator, optional
            Source of the samples (CPU), or one per spectrum (then a spectrum's answer does not
            depend on which others it is computed with); the same seeds give the same result.
        background : torch.Tensor, optional
            ``(N, J, L)`` additive terms per spectrum on the same pixels, each with a free
            coefficient (flat prior) marginalised beside the continuum
            (:func:`specvit.inference.likelihood.whitened_loglike`): e.g. the subtracted sky
            and its derivative, for a scale error and a shift of the sky subtraction.
        return_samples : bool
            Also return the samples and their log weights.

        Returns
        -------
        ExactPosterior

        Raises
        ------
        ValueError
            If the shapes disagree, or a proposal mean or σ is not finite, or a σ is ≤ 0, or a
            background term is not finite.
        """
        p = len(self.prior.names)
        if flux.dim() != 2 or flux.shape != sigma.shape:
            raise ValueError(
                f"flux and sigma must both be (N, L); got {tuple(flux.shape)}, {tuple(sigma.shape)}"
            )
        if mean.shape != (flux.shape[0], p) or std.shape != mean.shape:
            raise ValueError(
                f"mean and std must both be (N, {p}) for {flux.shape[0]} spectra and the labels "
                f"{self.prior.names}; got {tuple(mean.shape)}, {tuple(std.shape)}"
            )
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise ValueError("the proposal's means and σ must be finite, and σ > 0")
        if isinstance(generator, Sequence) and len(generator) != flux.shape[0]:
            raise ValueError(
                f"{len(generator)} generators for {flux.shape[0]} spectra: give one per "
                "spectrum, or one for all"
            )
        if background is not None:
            if background.dim() != 3 or background.shape[::2] != flux.shape:
                raise ValueError(
                    f"background must be (N, J, L) for flux {tuple(flux.shape)}; got "
                    f"{tuple(background.shape)}"
                )
            if not torch.isfinite(background).all():
                raise ValueError("the background terms must be finite")
        post = self._sample(flux, sigma, mean, std, generator, background, return_samples)
        for _ in range(self.retries):
            # a posterior far narrower than the network's σ (a bright star) gets few samples
            # from its proposal; sample it again about the posterior found so far
            low = torch.nonzero(self.low_ess(post) & (post.ess > 0)).squeeze(1)
            if not low.numel():
                break
            generators = (
                [generator[i] for i in low.tolist()]
                if isinstance(generator, Sequence)
                else generator
            )
            again = self._sample(
                flux[low],
                sigma[low],
                post.mean[low],
                torch.maximum(post.std[low], RETRY_FLOOR * std[low]),
                generators,
                None if background is None else background[low],
                return_samples,
            )
            better = again.ess > post.ess[low]
            rows = low[better]
            for field, new in zip(
                dataclasses.fields(post), dataclasses.astuple(again), strict=True
            ):
                old = getattr(post, field.name)
                if old is not None:
                    old[rows] = new[better]
        return post

    def _sample(
        self, flux, sigma, mean, std, generator, background, return_samples
    ) -> ExactPosterior:
        """The rounds of importance sampling for every spectrum, in chunks."""
        if isinstance(generator, Sequence):
            generators = [
                list(generator[a : a + self.chunk]) for a in range(0, len(generator), self.chunk)
            ]
        else:
            generators = [generator] * math.ceil(flux.shape[0] / self.chunk)
        chunks = math.ceil(flux.shape[0] / self.chunk)
        backgrounds = [None] * chunks if background is None else background.split(self.chunk)
        parts = [
            self._chunk(*args, return_samples)
            for args in zip(
                flux.split(self.chunk),
                sigma.split(self.chunk),
                mean.split(self.chunk),
                std.split(self.chunk),
                generators,
                backgrounds,
                strict=True,
            )
        ]
        fields = [torch.cat(t) if t[0] is not None else None for t in zip(*parts, strict=True)]
        return ExactPosterior(*fields)

    def _chunk(self, y, sigma, mean, std, generator, background, return_samples):
        y = y.to(torch.float64)
        w = sigma.to(torch.float64).reciprocal().square()
        bad = ~(torch.isfinite(y) & torch.isfinite(w))
        y, w = y.masked_fill(bad, 0.0), w.masked_fill(bad, 0.0)
        mean = mean.to(torch.float64)
        bounds = self.prior.bounds().to(torch.float64)
        floor = torch.diag((1e-3 * (bounds[:, 1] - bounds[:, 0])).square())
        reference = self.prior.clip(mean)
        with torch.no_grad():
            if self._linear is None:
                f0 = self.model(reference.to(self._model_dtype)).to(torch.float64)
                likelihood = self.likelihood(y, w, f0, background)
            else:  # the continuum held at the reference's, the flux linear in the design
                weights, products = self._linear
                held = self.model.continuum(reference.to(self._model_dtype)).to(torch.float64)
                likelihood = LinearLikelihood(
                    y, w, weights, held, self.continuum_order, background, products
                )
        proposals = [(mean, torch.diag_embed(self.inflate * std.to(torch.float64)))]
        thetas, log_targets, counts = [], [], []
        for r, k in enumerate(self._round_sizes()):
            if r > 0:  # a Student-t fitted to the weighted samples so far
                log_w = self._log_weights(thetas, log_targets, proposals, counts)
                proposals.append(self._fit(torch.cat(thetas, 1), log_w, proposals[0], floor))
            theta = self._draw(*proposals[-1], k, generator)
            log_prior = self.prior.log_density(theta)
            inside = torch.isfinite(log_prior)
            safe = torch.where(inside[..., None], theta, reference[:, None])  # no extrapolation
            log_target = self._loglike(likelihood, safe) + log_prior
            thetas.append(theta)
            log_targets.append(torch.where(inside, log_target, -math.inf))
            counts.append(k)
        theta = torch.cat(thetas, 1)
        log_w = self._log_weights(thetas, log_targets, proposals, counts)
        weights = log_w.exp()  # rows of zeros where every sample fell outside
        ess = weights.sum(1).square() / weights.square().sum(1).clamp_min(1e-300)
        post_mean = (weights[..., None] * theta).sum(1)
        centred = theta - post_mean[:, None]
        # the unbiased covariance of weighted samples (reliability weights): over 1 − Σw², i.e.
        # 1 − 1/ESS; the plain weighted sum is that much too small (1 % at an ESS of 100); and
        # the estimate's: plus the sampling variance of the weighted mean, the covariance / ESS
        sum_w2 = weights.square().sum(1)[:, None, None]
        scale = (1.0 + sum_w2) / (1.0 - sum_w2).clamp_min(1e-12)
        cov = (weights[..., None] * centred).mT @ centred * scale
        empty = ess == 0
        post_mean = post_mean.masked_fill(empty[:, None], math.nan)
        cov = cov.masked_fill(empty[:, None, None], math.nan)
        std_out = torch.diagonal(cov, dim1=-2, dim2=-1).clamp_min(0.0).sqrt()
        extra = (theta, log_w) if return_samples else (None, None)
        return post_mean, std_out, cov, ess, *extra

    @functools.cached_property
    def _linear(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The design weights and their :func:`~specvit.inference.likelihood.design_products`
        where the likelihood is taken with the model's continuum held (a model with a
        ``continuum`` and ``normalised_weights``, as the emulator, and a continuum polynomial
        marginalised); None: the likelihood of the model's fluxes."""
        if not self.continuum_order or not hasattr(self.model, "continuum"):
            return None
        weights = self.model.normalised_weights.detach().to("cpu", torch.float64)
        return weights, design_products(weights)

    @torch.no_grad()
    def _loglike(self, likelihood, labels: torch.Tensor) -> torch.Tensor:
        """``(n, k)`` the log likelihood of labels ``(n, k, P)`` (inside the model's range)."""
        n, k, p = labels.shape
        flat = labels.reshape(-1, p).to(self._model_dtype)
        if isinstance(likelihood, LinearLikelihood):
            return likelihood.loglike(self.model.design(flat).view(n, k, -1))
        sums = likelihood.zeros(k)
        for pixels, f in self._flux_blocks(flat):
            likelihood.accumulate(sums, f.view(n, k, -1), pixels)
        return likelihood.loglike(sums)

    def _flux_blocks(self, labels: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor]]:
        """The model's fluxes in blocks of pixels where it makes them so
        (:meth:`specvit.emulator.Emulator.flux_blocks`: each block is summed while in cache),
        else whole."""
        blocks = getattr(self.model, "flux_blocks", None)
        if blocks is None:
            yield slice(None), self.model(labels)
        else:
            yield from blocks(labels)

    @property
    def _model_dtype(self) -> torch.dtype:
        return getattr(self.model, "dtype", torch.float64)

    def _round_sizes(self) -> list[int]:
        """Samples per round: ``n_samples`` split as evenly as possible (the first the most)."""
        base, extra = divmod(self.n_samples, self.rounds)
        return [base + (r < extra) for r in range(self.rounds)]

    def _draw(self, mean, chol, k, generator):
        """``k`` Student-t draws per row (a normal over the root of a scaled chi-square), from
        one generator or one per row."""
        n, p = mean.shape
        rows = generator if isinstance(generator, list) else [generator]
        count = 1 if isinstance(generator, list) else n
        z = torch.cat([torch.randn(count, k, p, generator=g, dtype=torch.float64) for g in rows])
        chi2 = torch.cat([_chi2(count, k, self.nu, g) for g in rows])
        return mean[:, None] + (z @ chol.mT) * torch.sqrt(self.nu / chi2)

    def _log_weights(self, thetas, log_targets, proposals, counts):
        """Normalised log weights of all samples so far against the mixture of every round's
        proposal, each in proportion to its samples (deterministic mixture weights)."""
        theta, log_target = torch.cat(thetas, 1), torch.cat(log_targets, 1)
        total = sum(counts)
        log_q = torch.logsumexp(
            torch.stack(
                [
                    student_t_logpdf(theta, m, c, self.nu) + math.log(k / total)
                    for (m, c), k in zip(
                        proposals, counts + [0] * (len(proposals) - len(counts)), strict=True
                    )
                    if k > 0
                ]
            ),
            dim=0,
        )
        log_w = log_target - log_q
        log_w = torch.where(torch.isfinite(log_w), log_w, -math.inf)
        norm = torch.logsumexp(log_w, dim=1, keepdim=True)
        return torch.where(torch.isfinite(norm), log_w - norm, -math.inf)

    def _fit(self, theta, log_w, first, floor):
        """A Student-t proposal from weighted samples (their mean, ``refit_inflate`` × their σ);
        the first proposal where the samples carry no weight or the fit is degenerate."""
        weights = log_w.exp()[..., None]
        mean = (weights * theta).sum(1)
        centred = theta - mean[:, None]
        cov = self.refit_inflate**2 * ((weights * centred).mT @ centred) + floor
        chol, info = torch.linalg.cholesky_ex(cov)
        ok = (info == 0) & torch.isfinite(mean).all(1) & (weights.sum((1, 2)) > 0)
        mean = torch.where(ok[:, None], mean, first[0])
        chol = torch.where(ok[:, None, None], torch.nan_to_num(chol), first[1])
        return mean, chol


def _chi2(n: int, k: int, nu: float, generator: torch.Generator | None) -> torch.Tensor:
    """``(n, k, 1)`` chi-square draws with ``nu`` degrees of freedom from ``generator``.

    ``torch.distributions.Gamma`` takes no generator; for a reproducible stream the draws are
    the inverse CDF of uniforms from ``generator`` (``scipy.special.gammaincinv``, float64).
    """
    from scipy.special import gammaincinv

    u = torch.rand(n, k, 1, generator=generator, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    return torch.from_numpy(2.0 * gammaincinv(nu / 2, u.numpy()))


def exact_mismatch(config: SpecViTConfig) -> str | None:
    """Why ``predict``'s exact mode cannot serve a model (None: it can).

    It needs a Gaussian head (its σ shapes the proposal) predicting every label the emulator
    has, a model the emulator describes (:func:`specvit.inference.physics.emulator_mismatch`)
    and a training prior (``config.domain``): one of rest-frame spectra, or a model that shifts
    its spectra to the rest frame itself (``config.rest_frame``; the velocity is then the measured
    one, not sampled).
    """
    if config.head != "gaussian":
        return f"the model has a {config.head!r} head, no σ to build the proposal from"
    if sorted(config.label_names) != sorted(LABEL_NAMES):
        return f"the model predicts {list(config.label_names)}, the emulator {list(LABEL_NAMES)}"
    reason = emulator_mismatch(config)
    if reason is not None:
        return reason
    if config.domain is None:
        return "the model's config has no training prior (domain)"
    if config.domain.frame != "rest" and not config.rest_frame:
        return (
            "the model was trained on observed-frame spectra it does not shift to the rest "
            "frame; exact mode needs rest-frame spectra"
        )
    return None


class ExactModeError(ValueError):
    """A model that ``predict``'s exact mode cannot serve (:func:`exact_mismatch` says why)."""


class ExactCorrection:
    """``predict``'s exact mode: :class:`ImportancePosterior` for one model.

    The prior is uniform over the model's training box (``config.domain.labels``), the
    likelihood the emulator's on the model's grid, the proposal the network's labels and σ. The
    likelihood follows the model's input: for a model that divides the flux by its continuum
    (``input_norm="continuum"``) the continuum polynomial of its ``continuum_order`` is
    marginalised, not only the amplitude; a model that shifts spectra to the rest frame
    (``config.rest_frame``) gives the rest-frame spectrum its input was built from (the velocity
    measured, not sampled: its error, about 1 km/s at S/N ≥ 10, is far below the 60 km/s LSF;
    its σ corrected by ``predict`` for the shift's interpolation,
    :func:`specvit.velocity.interpolated_variance`);
    and the pixels the model's emulator fit leaves out
    (:meth:`specvit.inference.physics.PhysicalContext.ignored`: the spikes and sky lines of a
    model trained on them) are left out of the likelihood too. The LSF is a nuisance: each
    spectrum's likelihood takes the emulator at the resolving power of the MR arm's spread
    (:data:`specvit.instrument.MR_RESOLVING_POWERS`) that fits it best at the network's labels,
    the design one unless another is better by :data:`LSF_DELTA_CHI2`. Where the sky the
    pipeline subtracted is given, a scale error of it and a shift of it (its derivative) are
    marginalised too: the additive residuals a sky subtraction leaves. For a model that shifts
    spectra to the rest frame, whose velocity is therefore known, the model also has a free
    scale in each telluric band (:data:`specvit.instrument.TELLURIC_BANDS`, where the band fell
    in the observed frame): additive terms, the emulator's spectrum at the network's labels on
    the band's pixels, marginalised like the sky's. A telluric correction leaves a residual of a
    few per cent there, which the likelihood would otherwise read as the star's.

    Parameters
    ----------
    config : SpecViTConfig
        The model's config (:func:`exact_mismatch` must be None).
    n_samples : int
        Importance samples per spectrum.
    seed : int
        Seed of the samples: spectrum ``i`` of the input draws from ``seed`` and ``i`` alone,
        so the same inputs give the same answers whatever the batch size or the threads.

    Raises
    ------
    ExactModeError
        If :func:`exact_mismatch` says why the model cannot be served.
    """

    def __init__(self, config: SpecViTConfig, n_samples: int = 256, seed: int = 0) -> None:
        reason = exact_mismatch(config)
        if reason is not None:
            raise ExactModeError(f"exact mode needs a model the emulator describes: {reason}")
        from specvit.bounds.prior import Uniform

        box = config.domain.labels
        self._prior = LabelPrior({name: Uniform(*box[name]) for name in LABEL_NAMES})
        self._order = config.continuum_order if config.input_norm == "continuum" else 0
        self._n_samples = n_samples
        self._samplers: dict[float, ImportancePosterior] = {}
        #: the sampler at the design LSF (its settings are every LSF's)
        self.sampler = self._sampler(MR_RESOLUTION)
        self.seed = int(seed)
        self._context = PhysicalContext(config, torch.device("cpu"))
        #: the grid of the rest-frame spectra whose telluric bands are marginalised, or None
        self._telluric_grid = config.wavelength_grid if config.rest_frame else None
        #: the telluric bands whose depth the likelihood marginalises (those on the grid)
        self.telluric_bands: tuple[str, ...] = ()
        if self._telluric_grid is not None:
            on = telluric_band_masks(self._telluric_grid, torch.zeros(1))[0].any(-1)
            self.telluric_bands = tuple(b for b, o in zip(TELLURIC_BANDS, on, strict=True) if o)
        self._to_emulator = [config.label_names.index(name) for name in LABEL_NAMES]
        self._to_model = [LABEL_NAMES.index(name) for name in config.label_names]

    def _sampler(self, resolution: float) -> ImportancePosterior:
        """The sampler whose likelihood is the emulator at LSF ``resolution`` (built once)."""
        if resolution not in self._samplers:
            from specvit.emulator import Emulator

            self._samplers[resolution] = ImportancePosterior(
                Emulator.load(resolution=resolution),
                self._prior,
                n_samples=self._n_samples,
                continuum_order=self._order,
            )
        return self._samplers[resolution]

    def _models(self, labels: torch.Tensor) -> torch.Tensor:
        """``(N, R, L)`` the emulator at ``labels`` ``(N, 3)`` (moved into the prior) at each
        resolving power of :data:`specvit.instrument.MR_RESOLVING_POWERS`."""
        at = self._prior.clip(labels).float()
        return torch.stack([self._sampler(r).model(at) for r in MR_RESOLVING_POWERS], dim=1)

    def _lsf(self, y, sigma, models, background=None) -> torch.Tensor:
        """``(N,)`` each spectrum's LSF: the design one, or the resolving power of
        :data:`specvit.instrument.MR_RESOLVING_POWERS` whose emulator spectrum at the network's
        labels (``models``, :meth:`_models`) fits it better by more than
        :data:`LSF_DELTA_CHI2`, the ``background`` terms (as in
        :meth:`ImportancePosterior.__call__`) fitted with it."""
        w = sigma.reciprocal().square()
        bad = ~(torch.isfinite(y) & torch.isfinite(w))
        y, w = y.masked_fill(bad, 0.0), w.masked_fill(bad, 0.0)
        powers = torch.tensor(MR_RESOLVING_POWERS, dtype=torch.float64)
        basis = continuum_basis(y.shape[-1], self._order)
        chi2 = best_fit_chi2(y, w, models, basis, background)  # (N, R)
        design = chi2[:, MR_RESOLVING_POWERS.index(MR_RESOLUTION)]
        best = chi2.min(dim=1)
        better = best.values < design - LSF_DELTA_CHI2
        return torch.where(better, powers[best.indices], MR_RESOLUTION)

    def _telluric_terms(self, model: torch.Tensor, v_rad: torch.Tensor) -> torch.Tensor | None:
        """``(n, B, L)`` the additive terms of a free model scale in each telluric band that
        falls on the spectra (``model``, the emulator's ``(n, L)`` flux at the network's labels,
        on the band's pixels), or None for a model that does not shift spectra to the rest
        frame."""
        if self._telluric_grid is None:
            return None
        masks = telluric_band_masks(self._telluric_grid, v_rad)
        masks = masks[:, masks.sum((0, 2)) > 0]  # the bands on the arm
        if not masks.shape[1]:
            return None
        return model.double()[:, None] * masks

    def __call__(
        self,
        mean: torch.Tensor,
        sigma: torch.Tensor,
        flux: torch.Tensor,
        error: torch.Tensor,
        valid: torch.Tensor,
        start: int,
        continuum: torch.Tensor | None = None,
        sky: torch.Tensor | None = None,
        v_rad: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The exact posterior of one batch, in the model's label order.

        Parameters
        ----------
        mean, sigma : torch.Tensor
            ``(n, P)`` the network's labels and σ (NaN where it gave none: skipped).
        flux, error : torch.Tensor
            ``(n, L)`` the spectra on the model's grid and their 1σ.
        valid : torch.Tensor
            ``(n, L)`` bool, the pixels to use.
        start : int
            Index of the batch's first spectrum in the input (seeds the samples).
        continuum : torch.Tensor, optional
            ``(n, L)`` the continuum fit of ``flux``
            (:attr:`specvit.preprocessing.Prepared.continuum`).
        sky : torch.Tensor, optional
            ``(n, L)`` the sky subtracted from ``flux``, on the same pixels and in its unit
            (finite where ``valid``).
        v_rad : torch.Tensor, optional
            ``(n,)`` km/s, the velocity each spectrum was shifted to the rest frame by (where the
            telluric bands fell); None: at rest. A NaN velocity is taken as 0.

        Returns
        -------
        mean, sigma, cov, ess : torch.Tensor
            ``(n, P)``, ``(n, P)``, ``(n, P, P)`` and ``(n,)``, float64 on the CPU; NaN and ESS 0
            where the network gave no labels.
        """
        n, p = mean.shape
        out_mean = torch.full((n, p), math.nan, dtype=torch.float64)
        out_sigma = torch.full((n, p), math.nan, dtype=torch.float64)
        out_cov = torch.full((n, p, p), math.nan, dtype=torch.float64)
        ess = torch.zeros(n, dtype=torch.float64)
        rows = torch.isfinite(mean).all(1) & torch.isfinite(sigma).all(1) & (sigma > 0).all(1)
        rows = rows.cpu()
        if rows.any():
            flux, error, valid = flux.cpu(), error.cpu(), valid.cpu()
            continuum = None if continuum is None else continuum.cpu()
            used = valid & ~self._context.ignored(flux, error, valid, continuum)
            err = torch.where(used, error, torch.inf)[rows]
            seeds = (self.seed * 1_000_003 + start + torch.nonzero(rows).squeeze(1)).tolist()
            generators = [torch.Generator().manual_seed(seed) for seed in seeds]
            y, err = flux[rows].to(torch.float64), err.to(torch.float64)
            labels = mean.cpu()[rows][:, self._to_emulator].to(torch.float64)
            std = sigma.cpu()[rows][:, self._to_emulator].to(torch.float64)
            terms = []
            if sky is not None:  # a scale error and a shift of the subtracted sky
                sky = sky.cpu()[rows].to(torch.float64)
                sky = torch.where(torch.isfinite(sky), sky, 0.0)
                terms.append(torch.stack([sky, torch.gradient(sky, dim=-1)[0]], dim=1))
            models = self._models(labels)
            v = torch.zeros(n, dtype=torch.float64) if v_rad is None else v_rad.cpu().double()
            design = models[:, MR_RESOLVING_POWERS.index(MR_RESOLUTION)]
            telluric = self._telluric_terms(design, torch.nan_to_num(v[rows], nan=0.0))
            if telluric is not None:
                terms.append(telluric)
            background = torch.cat(terms, dim=1) if terms else None
            lsf = self._lsf(y, err, models, background)
            index = torch.nonzero(rows).squeeze(1)
            order = self._to_model
            for resolution in lsf.unique().tolist():
                group = torch.nonzero(lsf == resolution).squeeze(1)
                post = self._sampler(resolution)(
                    y[group],
                    err[group],
                    labels[group],
                    std[group],
                    [generators[i] for i in group.tolist()],
                    background=None if background is None else background[group],
                )
                at = index[group]
                out_mean[at] = post.mean[:, order]
                out_sigma[at] = post.std[:, order]
                out_cov[at] = post.cov[:, order][:, :, order]
                ess[at] = post.ess
        return out_mean, out_sigma, out_cov, ess
