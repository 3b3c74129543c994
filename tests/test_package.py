"""The package's exported names (``ftlab.freeze``, ``ftlab.grading.expect``): each is its module's own object, loaded
on first use, so that a process needing a corner of the package -- the grading service's queue and job runner --
starts without torch."""

import importlib
import inspect
import subprocess
import sys

import pytest

import ftlab
import ftlab.grading

PACKAGES = [ftlab, ftlab.grading]


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_every_exported_name_is_its_modules_object(package):
    names = {name: module for module, names in package._EXPORTS.items() for name in names}
    assert package.__all__ == sorted(names) and len(names) > 5
    for name, module in names.items():
        defined = importlib.import_module(f"{package.__name__}.{module}")
        assert getattr(package, name) is getattr(defined, name), f"{package.__name__}.{name}"
        assert name in dir(package)
    namespace: dict = {}
    exec(f"from {package.__name__} import *", namespace)
    assert set(package.__all__) <= set(namespace) and not any(inspect.ismodule(v) for v in namespace.values())


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_an_unknown_name_is_an_attribute_error_naming_it(package):
    with pytest.raises(AttributeError, match="fine_tune_everything"):
        package.fine_tune_everything  # noqa: B018
    assert not hasattr(package, "fine_tune_everything")


def test_a_bare_import_reaches_every_submodule():
    """``import ftlab`` then ``ftlab.optim.param_groups``, as notebooks write it: the submodule loads when named."""
    code = (
        "import ftlab, ftlab.grading\n"
        "print(ftlab.optim.layerwise_lrs(1e-3, 0.5, 2), ftlab.train.fit.__name__, ftlab.grading.sandbox.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[0.0005,", "0.001]", "fit", "ftlab.grading.sandbox"]


def test_lr_find_is_the_function_whatever_was_imported_first():
    """The module is ``ftlab.lr_finder``: importing it cannot turn ``ftlab.lr_find`` into a module."""
    code = "import ftlab.lr_finder, ftlab; print(callable(ftlab.lr_find), ftlab.lr_find.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "ftlab.lr_finder"]


def test_the_grading_services_pieces_load_without_torch():
    """The queue, the job runner and the service import only what they use: the package ``__init__``s load no torch
    (about 2 CPU-s, paid by every process of a class's grading service). First use of an exported name still does."""
    code = (
        "import sys, ftlab, ftlab.grading\n"
        "import ftlab.grading.jobproc, ftlab.grading.jobs, ftlab.grading.queue, ftlab.grading.service\n"
        "print('torch' in sys.modules)\n"
        "ftlab.freeze, ftlab.grading.expect\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]
