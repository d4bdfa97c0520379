"""Physical ceilings on stellar-parameter inference: Fisher / Cramér–Rao, van Trees, Bayes-optimal.

See ``docs/bounds.md`` for what each number means. The modules hold more (the Jacobian helpers,
the velocity derivative, the amplitude-marginal likelihood) for those who build on them. The
nuisances are the other labels, ``v_rad``, ``ln_A`` and (``continuum_order=K``) a multiplicative
Legendre continuum of order K.
"""

from specvit.bounds.bayes import Posterior, PosteriorMean
from specvit.bounds.ceilings import (
    Ceilings,
    crlb_ceilings,
    default_nuisance,
    sigma_from_relative_error,
)
from specvit.bounds.fisher import (
    AMPLITUDE,
    continuum_parameters,
    fisher_information,
    marginal_crlb,
)
from specvit.bounds.jacobian import JacobianCheck, check_jacobian
from specvit.bounds.prior import Beta, LabelPrior, Uniform
from specvit.bounds.table import CeilingRow, ceiling_table, format_table, magnitude_for_snr
from specvit.bounds.van_trees import van_trees_bound
from specvit.bounds.velocity import VELOCITY

__all__ = [
    "AMPLITUDE",
    "VELOCITY",
    "Beta",
    "CeilingRow",
    "Ceilings",
    "JacobianCheck",
    "LabelPrior",
    "Posterior",
    "PosteriorMean",
    "Uniform",
    "ceiling_table",
    "check_jacobian",
    "continuum_parameters",
    "crlb_ceilings",
    "default_nuisance",
    "fisher_information",
    "format_table",
    "magnitude_for_snr",
    "marginal_crlb",
    "sigma_from_relative_error",
    "van_trees_bound",
]
