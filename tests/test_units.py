"""Unit faults: laws that only hold in the units the data was written in."""

from __future__ import annotations

import pytest

from hybrid_sld.law_task import parse_task_law
from hybrid_sld.tasks import builtin_task_names, get_task, task_from_dict
from hybrid_sld.units import unit_faults

TASK = task_from_dict({
    "name": "units_demo", "targets": ["loss"],
    "features": {"N": {"unit": "parameters"}, "D": {"unit": "tokens"}, "U": {"unit": "tokens"},
                 "f": {"unit": "fraction"}, "logC": {"unit": "log10(flops)"}},
    "split": {"kind": "largest", "by": "N"},
})


def faults(body: str) -> list[str]:
    return unit_faults(parse_task_law(f"loss = {body}", TASK), TASK)


@pytest.mark.parametrize("body", [
    "E + A/N^alpha + B/D^beta",  # Chinchilla: each power has its own constant
    "E + A*(N/N0)^(-alpha)",
    "a*log(N) + b*log(D) + c*log(N)*log(D) + L0",  # log of a quantity with a unit is allowed
    "E + A*exp(-D/(R*U))",  # a ratio of like units is a pure number
    "E + A/N^alpha*(1 + k*log(D/U))",
    "exp(a + b*f) + c*logC^2",  # fractions and logs are pure numbers
    "E + A/(N^alpha + c*D^beta)",  # a free constant takes the unit it meets
    "E + sqrt(A/N)",
    "E + A*(1 + D^0.3/U^0.3)",  # decimal exponents scale units as fractions do
])
def test_consistent_laws_have_no_faults(body):
    assert faults(body) == []


@pytest.mark.parametrize("body, where", [
    ("E + A*N^alpha + D", "loss is a pure number"),  # E takes tokens: so does the loss
    ("E + A*exp(-N)", "argument of exp"),
    ("E + A*tanh(D)", "argument of tanh"),
    ("E + A*N^(D/U + sqrt(D))", "adds tokens^1/2 to a pure number"),
    ("E + A*N^sqrt(D)", "exponent"),
    ("E + A/(N^alpha + D^beta)", "adds"),  # no constant can match two fitted powers
    ("1 + N^(-alpha)", "adds"),
    ("E + N/D", "loss is a pure number"),
])
def test_faults_name_the_subexpression(body, where):
    found = faults(body)
    assert found and where in found[0], found


def test_every_builtin_expert_law_is_free_of_unit_faults():
    """The laws of the literature hold in any units (moe's expert count is a pure number, as in
    Clark et al.'s E - 1); the check is only worth having if it lets them all through."""
    for name in builtin_task_names():
        task = get_task(name)
        assert unit_faults(parse_task_law(task.expert_law, task), task) == [], name


def test_a_count_declared_with_a_unit_is_held_to_it():
    task = task_from_dict({"name": "moe_units", "targets": ["loss"],
                           "features": {"E": {"unit": "experts"}, "N": {"unit": "parameters"}},
                           "split": {"kind": "largest", "by": "N"}})
    law = parse_task_law("loss = a*log(N) + b*log(E - 1 + c)", task)
    assert len(unit_faults(law, task)) == 1
