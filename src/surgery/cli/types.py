"""Option types of the command line that click does not have."""

from __future__ import annotations

import math

import click


class FiniteFloat(click.FloatRange):
    """A float in a range, refusing NaN and infinities, which compare False with every bound and so pass
    click's own range check (a NaN validation split or tolerance would slip through)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number
