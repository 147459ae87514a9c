"""benchmarks/lr_rule.py: the optimum found from a grid of learning rates, and the power law fitted across widths."""

import pytest

from notebook_defs import load_benchmark

pytestmark = pytest.mark.benchmarks  # developers' tools: CI runs these on requirements-dev.txt, not the floors


@pytest.fixture(scope="module")
def lr_rule():
    return load_benchmark("lr_rule")


def test_the_optimum_is_the_vertex_of_the_parabola_in_log_learning_rate(lr_rule):
    def loss(lr):  # a parabola in log2(lr) with its minimum at 3e-3
        import math

        return 1.5 + 0.1 * (math.log2(lr) - math.log2(3e-3)) ** 2

    lrs = [1e-3, 2e-3, 4e-3, 8e-3]
    found, at_edge = lr_rule.optimum({lr: loss(lr) for lr in lrs})
    assert found == pytest.approx(3e-3, rel=1e-9) and not at_edge
    assert lr_rule.optimum({lr: loss(lr) for lr in lrs[2:]}) == (4e-3, True)  # the best is the grid's smallest


def test_the_power_law_recovers_its_constant_and_exponent(lr_rule):
    optima = {width: 0.4 * width**-0.8 for width in (64, 128, 256)}
    c, a = lr_rule.power_law(optima)
    assert c == pytest.approx(0.4) and a == pytest.approx(0.8)


def test_each_width_keeps_heads_of_32_dimensions_and_an_mlp_four_times_as_wide(lr_rule):
    assert lr_rule.shape_at(256) == {"d_model": 256, "n_heads": 8, "d_ff": 1024}
    assert lr_rule.shape_at(32)["n_heads"] == 2  # at least two heads
