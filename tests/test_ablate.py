"""benchmarks/ablate.py builds each variant from the Config values its table says it changes."""

import dataclasses
import importlib.util
from pathlib import Path

import pytest

ABLATE = Path(__file__).resolve().parent.parent / "benchmarks" / "ablate.py"


@pytest.fixture(scope="module")
def ablate():
    spec = importlib.util.spec_from_file_location("ablate", ABLATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def variant(ablate, nb, name, on=()):
    underneath = {key: value for other in on for key, value in ablate.variant_values(nb, other).items()}
    return ablate.variant_config(nb, "small", {**underneath, **ablate.variant_values(nb, name)})


def differences(a, b):
    return {f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)}


def test_fixed_is_the_reference_architecture_and_objective_whatever_the_defaults(ablate, nb):
    fixed = variant(ablate, nb, "fixed")
    assert {name: getattr(fixed, name) for name in ablate.REFERENCE_CHOICES} == ablate.REFERENCE_CHOICES
    assert fixed.embedding_std == nb.Config.embedding_std and fixed.schedule_length == "updates"
    assert differences(variant(ablate, nb, "reference"), fixed) == {"embedding_std", "schedule_length"}


def test_defaults_are_the_notebooks_own(ablate, nb):
    defaults = variant(ablate, nb, "defaults")
    notebook = dataclasses.replace(nb.get_config("quick"), **ablate.SMALL, mode=defaults.mode)
    assert defaults == notebook


def test_a_variant_changes_only_its_own_values_on_top_of_fixed_or_of_others(ablate, nb):
    fixed = variant(ablate, nb, "fixed")
    assert differences(variant(ablate, nb, "rope"), fixed) == {"position"}
    assert differences(variant(ablate, nb, "SwiGLU", on=["rope"]), fixed) == {"position", "mlp"}
    defaults = variant(ablate, nb, "defaults")
    assert differences(variant(ablate, nb, "stratified t", on=["defaults"]), defaults) == {"t_sampling"}
    lower = variant(ablate, nb, "lr /3", on=["defaults", "another seed"])
    assert differences(lower, defaults) == {"lr", "seed"} and lower.lr == pytest.approx(defaults.lr / 3)


def test_the_reference_choices_agree_with_the_notebooks_list_of_options(ablate, nb):
    # the notebook's CHOICES lists the reference's option first; ablate.py names them again for "fixed"
    for name, value in ablate.REFERENCE_CHOICES.items():
        if name in nb.CHOICES:
            assert value == nb.CHOICES[name][0], name
