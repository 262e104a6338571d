"""Gradient checking: a gradient's dC/dw^l_jk and dC/db^l_j against derivatives of C computed from
evaluations of C alone. Pure compute: the check returns plain data, `render.gradcheck` draws it.

C(w, b) = (1/m) sum_x C_x is the batch-mean cost of a fixed batch x (m, n_1) with targets y (m, n_L),
exactly what `Network.cost_value` computes; L2 decay and anything else outside C is not part of it.

    subject     what is checked: parameters, C, and the gradient to judge (bpcli's reference path:
                backprop in float64; its training path: `Network.backward` as training calls it)
    numerical   the numerical side: central differences, complex step, random directions (float64)
    rounding    the tolerance of a float32 path, derived from a simulation of float32 rounding
    report      results, the comparison rule, the JSON file
    checker     check (one path), check_paths (bpcli's paths at one point), check_subjects (any)
    load        the network, batch size and batch `bpcli gradcheck` checks on
    user_load   a learner's own network from PATH.py:NAME (runs their code), their exceptions as theirs
    user        their network as a subject: book style (Nielsen's network.py API) or function style
    diagnose    which of BP1..BP4 (or a constant factor) the failing groups point to
    forward     their forward pass and cost against bpcli's network with the same weights
    trace       one dC/dw^l_jk of theirs beside bpcli's, equation by equation
    api         check_gradients: their network checked, diagnosed and compared (`from bpcli import ...`)
"""

from __future__ import annotations

from bpcli.gradcheck.checker import PATHS, check, check_paths, check_subjects
from bpcli.gradcheck.load import batch_for, default_batch, load_subject
from bpcli.gradcheck.numerical import (
    ATOL_NOISE, CHUNK_BYTES, DEFAULT_DIRECTIONS, DEFAULT_EPS, DEFAULT_RTOL, METHODS, Layered, Probes,
    default_atol, numerical_entries,
)
from bpcli.gradcheck.report import GradcheckResult, GroupResult, Report, Worst, check_writable, write_json
from bpcli.gradcheck.subject import (
    GradientFn, Parameter, ReferenceSubject, Subject, TrainingSetup, TrainingSubject, backprop,
)

__all__ = [
    "ATOL_NOISE", "CHUNK_BYTES", "DEFAULT_DIRECTIONS", "DEFAULT_EPS", "DEFAULT_RTOL", "METHODS", "PATHS",
    "GradcheckResult", "GradientFn", "GroupResult", "Layered", "Parameter", "Probes", "ReferenceSubject", "Report",
    "Subject", "TrainingSetup", "TrainingSubject", "Worst", "backprop", "batch_for", "check", "check_paths",
    "check_subjects", "check_writable", "default_atol", "default_batch", "load_subject", "numerical_entries",
    "write_json",
]
