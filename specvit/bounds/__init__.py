"""Physical ceilings on stellar-parameter inference: Fisher / Cramér–Rao, van Trees, Bayes-optimal.

See ``docs/bounds.md`` for what each number means.
"""

from specvit.bounds.fisher import (
    AMPLITUDE,
    append_amplitude,
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

__all__ = [
    "AMPLITUDE",
    "Beta",
    "JacobianCheck",
    "LabelPrior",
    "Uniform",
    "append_amplitude",
    "autograd_jacobian",
    "central_difference_jacobian",
    "check_jacobian",
    "fisher_information",
    "marginal_crlb",
    "marginal_crlb_inverse",
    "parameter_index",
]
