"""``python -m specvit``: the package's commands where their scripts are not on the PATH.

``python -m specvit predict …`` is ``specvit-predict …`` and ``python -m specvit bounds …`` is
``specvit-bounds …`` (same options, output and exit codes).
"""

from __future__ import annotations

import click

from specvit.bounds.cli import main as bounds
from specvit.inference.cli import main as predict

__all__ = ["main"]


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    commands={"predict": predict, "bounds": bounds},
)
@click.version_option(package_name="specvit", prog_name="specvit")
def main() -> None:
    """specvit's commands: predict (= specvit-predict) and bounds (= specvit-bounds).

    'python -m specvit predict --help' and 'python -m specvit bounds --help' list their
    options; 'python -m specvit predict --list-models' lists the bundled trained models.
    """


if __name__ == "__main__":
    main(prog_name="python -m specvit")
