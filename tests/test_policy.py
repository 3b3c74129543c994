"""The own-work policy (ftlab.grading.policy): decided in the grader, from the student's code.

Each attack below got library answers past the runtime guards in the student's kernel
(a review of ``main`` in December); the policy must cost the checks they protect, and
the instructor's own answers -- and honest variations -- must cost nothing.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest

from ftlab.cli import main as ftlab_main
from ftlab.grading import policy

ROOT = Path(__file__).resolve().parents[1]


def _source(assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(next((ROOT / "solutions" / assignment).glob("*.ipynb")), as_version=4)


def _submission(assignment: str, answers: dict[str, str], extra: list[str] = ()) -> nbformat.NotebookNode:
    """The instructor's notebook with some answer cells replaced, and extra cells after the setup cell."""
    nb = copy.deepcopy(_source(assignment))
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    nb.cells[2:2] = [nbformat.v4.new_code_cell(src) for src in extra]
    return nb


def _costs(assignment: str, answers: dict[str, str], extra: list[str] = ()) -> dict[str, list[policy.Finding]]:
    return policy.assess(_submission(assignment, answers, extra), _source(assignment)).costs


@pytest.mark.parametrize(
    "assignment",
    [p.name for p in sorted((ROOT / "solutions").iterdir()) if p.is_dir()],
)
def test_the_instructors_answers_break_no_rule(assignment):
    assessment = policy.assess(copy.deepcopy(_source(assignment)), _source(assignment))
    assert assessment.costs == {}, [f.message() for f in assessment.findings]


SOFTMAX_ATTACKS = {
    "method": "def softmax(z):\n    return z.softmax(dim=-1)\n",
    "torch function": "def softmax(z):\n    return torch.softmax(z, -1)\n",
    "functional alias": "import torch.nn.functional as G\ndef softmax(z):\n    return G.softmax(z, dim=-1)\n",
    "from import": "from torch.special import softmax as sm\ndef softmax(z):\n    return sm(z, -1)\n",
    "module class": "def softmax(z):\n    return torch.nn.Softmax(dim=-1)(z)\n",
    "private alias": "def softmax(z):\n    return torch._softmax(z, -1, False)\n",
    "base class method": "def softmax(z):\n    return torch._C.TensorBase.softmax(z, -1)\n",
    "aten op": "def softmax(z):\n    return torch.ops.aten._softmax.default(z, -1, False)\n",
    "log-sum-exp": "def softmax(z):\n    return torch.exp(z - torch.logsumexp(z, -1, keepdim=True))\n",
    "getattr constant": "def softmax(z):\n    return getattr(torch, 'softmax')(z, -1)\n",
    "getattr computed": "def softmax(z):\n    return getattr(torch, 'soft' + 'max')(z, -1)\n",
    "eval": "def softmax(z):\n    return eval('torch.soft' + 'max')(z, -1)\n",
    "exec source": "exec(open(torch.__file__.replace('__init__', 'functional')).read())\n"
    "def softmax(z):\n    return z.exp() / z.exp().sum(-1, keepdim=True)\n",
    "guard state": "from ftlab.grading import guards\nguards._active.clear()\n"
    "def softmax(z):\n    return torch.softmax(z, -1)\n",
    "reload": "import importlib\nimportlib.reload(torch)\ndef softmax(z):\n    return z.exp() / z.exp().sum(-1, keepdim=True)\n",
    "gc": "import gc\ndef softmax(z):\n    return [o for o in gc.get_objects()][0](z)\n",
    "code object": "def softmax(z):\n    return z\nsoftmax.__code__ = torch.nn.functional.softmax.__code__\n",
    "default argument": "def softmax(z, f=torch.softmax):\n    return f(z, -1)\n",
    "alias at top level": "sm = torch.softmax\ndef softmax(z):\n    return sm(z, -1)\n",
    "monkeypatch": "torch.my_softmax = lambda z: z.exp() / z.exp().sum(-1, keepdim=True)\n"
    "def softmax(z):\n    return torch.my_softmax(z)\n",
    "module as value": "T = torch\ndef softmax(z):\n    return T.special.softmax(z, -1)\n",
    "star import": "from torch.nn.functional import *\ndef softmax(z):\n    return log_softmax(z, -1).exp()\n",
    "sys.modules": "import sys\ndef softmax(z):\n    return sys.modules['torch'].softmax(z, -1)\n",
    "kernel handler": "get_ipython().kernel.shell_handlers['execute_request'] = None\n"
    "def softmax(z):\n    return z.exp() / z.exp().sum(-1, keepdim=True)\n",
    "cell magic": "%%writefile helper.py\nimport torch\nsm = torch.softmax\n",
    "own module": "import helper_written_at_run_time\ndef softmax(z):\n    return helper_written_at_run_time.sm(z, -1)\n",
    "dunder globals": "def softmax(z):\n    return softmax.__globals__['torch'].softmax(z, -1)\n",
    "attrgetter": "from operator import attrgetter\ndef softmax(z):\n    return attrgetter('softmax')(torch)(z, -1)\n",
}


@pytest.mark.parametrize("attack", list(SOFTMAX_ATTACKS))
def test_every_bypass_of_the_softmax_exercise_costs_its_check(attack):
    costs = _costs("ps4_bert_head", {"softmax": SOFTMAX_ATTACKS[attack]})
    assert "test_softmax" in costs, attack
    assert "test_ce_grad" in costs, attack  # ce_grad calls softmax: the library reaches its check too
    # the honest cls_logits check forbids nothing: it keeps its points
    assert "test_cls_logits" not in costs


def test_a_hatch_in_any_cell_costs_every_protected_check():
    costs = _costs("ps4_bert_head", {}, extra=["x = eval('1 + 1')"])
    assert set(costs) == {"test_softmax", "test_cross_entropy", "test_ce_grad"}
    (finding,) = costs["test_softmax"]
    assert finding.hatch and finding.line == 1 and "eval()" in finding.message()


def test_a_library_call_is_allowed_where_no_check_forbids_it():
    """ps3: train_gradually may call ftlab.unfreeze_top; freeze_bottom's check forbids it."""
    honest = _costs("ps3_freezing", {})
    assert honest == {}
    cheat = "def freeze_bottom(model, n):\n    ftlab.unfreeze_top(model, len(ftlab.layer_groups(model)) - n)\n"
    costs = _costs("ps3_freezing", {"freeze_bottom": cheat})
    assert set(costs) == {"test_freeze_bottom"}
    # ... and through a helper the checked function calls
    helper = "def helper(model, k):\n    ftlab.unfreeze_top(model, k)\n"
    via = "def freeze_bottom(model, n):\n    helper(model, len(ftlab.layer_groups(model)) - n)\n"
    assert set(_costs("ps3_freezing", {"freeze_bottom": via}, extra=[helper])) == {"test_freeze_bottom"}
    # ... and a helper handed around as a value is not exempt either
    stash = "TOOLS = []\ndef helper(model, k):\n    ftlab.unfreeze_top(model, k)\nTOOLS.append(helper)\n"
    via_list = "def freeze_bottom(model, n):\n    TOOLS[0](model, len(ftlab.layer_groups(model)) - n)\n"
    assert set(_costs("ps3_freezing", {"freeze_bottom": via_list}, extra=[stash])) == {"test_freeze_bottom"}


HONEST = {
    "model methods": "def count_params(model):\n    ps = {id(p): p for m in model.modules() for p in m.parameters(recurse=False)}\n"
    "    return sum(p.numel() for p in ps.values()), sum(p.numel() for p in ps.values() if p.requires_grad)\n",
    "optimizer param_groups": "opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)\nprint(len(opt.param_groups))\n",
    "magics": "%matplotlib inline\n%time x = 1\n!ls\n",
    "display": "from IPython.display import display\ndisplay(1)\n",
    "dunder name": "print(type(nn.Linear(1, 1)).__name__)\n",
    "private name of another library": "import os\nif False:\n    os._exit(1)\n",
}


@pytest.mark.parametrize("case", list(HONEST))
def test_honest_code_costs_nothing(case):
    assert _costs("ps1_parameters", {}, extra=[HONEST[case]]) == {}, case


def test_the_students_command_reports_without_the_source(tmp_path, capsys):
    """`ftlab policy` on a student's copy: no hidden tests there, so it is stricter, never looser."""
    nb = nbformat.read(ROOT / "exercises" / "ps4_bert_head" / "bert_head.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "softmax":
            cell.source = "def softmax(z):\n    return torch.softmax(z, dim=-1)\n"
    path = tmp_path / "bert_head.ipynb"
    nbformat.write(nb, path)
    assert ftlab_main(["policy", str(path)]) == 1
    out = capsys.readouterr().out
    assert "softmax, line 2: uses softmax, which this exercise asks you to write yourself" in out, out
    assert "test_softmax" in out
    clean = tmp_path / "clean.ipynb"
    nbformat.write(nbformat.read(ROOT / "exercises" / "ps4_bert_head" / "bert_head.ipynb", as_version=4), clean)
    assert ftlab_main(["policy", str(clean)]) == 0
    assert "nothing in your code breaks" in capsys.readouterr().out
