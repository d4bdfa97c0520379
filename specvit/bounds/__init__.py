"""Physical ceilings on stellar-parameter inference: Fisher / Cramér–Rao, van Trees, Bayes-optimal.

See ``docs/bounds.md`` for what each number means.
"""

from specvit.bounds.bayes import (
    Posterior,
    PosteriorMean,
    amplitude_marginal_loglike,
    van_trees_bound,
)
from specvit.bounds.ceilings import (
    DEFAULT_NUISANCE,
    CeilingRow,
    Ceilings,
    ceiling_table,
    crlb_ceilings,
    default_nuisance,
    format_table,
    magnitude_for_snr,
    sigma_from_relative_error,
)
from specvit.bounds.fisher import (
    AMPLITUDE,
    fisher_information,
    marginal_crlb,
    marginal_crlb_inverse,
    parameter_index,
)
from specvit.bounds.jacobian import (
    JacobianCheck,
    autograd_jacobian,
    central_difference_jacobian,
    check_jacobian,
)
from specvit.bounds.prior import Beta, LabelPrior, Uniform
from specvit.bounds.velocity import VELOCITY, velocity_jacobian

__all__ = [
    "AMPLITUDE",
    "DEFAULT_NUISANCE",
    "VELOCITY",
    "Beta",
    "CeilingRow",
    "Ceilings",
    "JacobianCheck",
    "LabelPrior",
    "Posterior",
    "PosteriorMean",
    "Uniform",
    "amplitude_marginal_loglike",
    "autograd_jacobian",
    "ceiling_table",
    "central_difference_jacobian",
    "check_jacobian",
    "crlb_ceilings",
    "default_nuisance",
    "fisher_information",
    "format_table",
    "magnitude_for_snr",
    "marginal_crlb",
    "marginal_crlb_inverse",
    "parameter_index",
    "sigma_from_relative_error",
    "van_trees_bound",
    "velocity_jacobian",
]
