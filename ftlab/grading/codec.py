"""The one format that carries values from a student's kernel to the grader: JSON plus safetensors.

Nothing a student's process produces is ever unpickled: a reply is a JSON document
(strings, numbers, lists and tagged objects) and one safetensors blob for all its
tensors, both parsed by code that cannot run anything. The other direction -- test
inputs the grader sends to the student's kernel -- may use ``torch.save``: a
student unpickling the grader's data harms nobody.

Tags (a dict whose only key starts with ``$``):

=================  =====================================================
``$tuple``         a tuple (JSON has only lists)
``$set``           a set
``$dict``          a dict as ``[[key, value], ...]`` (keys of any encodable type)
``$float``         ``"nan"``, ``"inf"`` or ``"-inf"``
``$tensor``        ``[key, requires_grad]``: a torch tensor in the blob
``$ndarray``       key of a NumPy array in the blob
``$dtype``         a torch dtype by name
``$param``         ``[i, name]``: parameter ``name`` of the i-th module argument of the call
``$module``        a module's state: tensors, ``requires_grad`` flags, train/eval flags
=================  =====================================================
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

__all__ = [
    "EncodeError",
    "DecodeError",
    "encode",
    "decode",
    "module_state",
    "apply_module_state",
    "MAX_DEPTH",
    "ModuleState",
]

MAX_DEPTH = 32
MAX_ITEMS = 1_000_000


class EncodeError(TypeError):
    """A value that cannot travel from the student's kernel to the grader.

    >>> encode(object())
    Traceback (most recent call last):
    ...
    ftlab.grading.codec.EncodeError: a value of type object cannot be sent to the grader
    """


class DecodeError(ValueError):
    """A reply that is not a well-formed encoded value.

    >>> decode(b"junk")
    Traceback (most recent call last):
    ...
    ftlab.grading.codec.DecodeError: truncated reply
    """


# --------------------------------------------------------------------------- encode (runs in the student's kernel)


class _Encoder:
    def __init__(self, param_refs: dict[int, tuple[int, str]] | None = None):
        self.tensors: dict[str, torch.Tensor] = {}
        self.param_refs = param_refs or {}
        self.items = 0

    def tensor(self, t: torch.Tensor) -> str:
        key = str(len(self.tensors))
        self.tensors[key] = t.detach().to("cpu", copy=True).contiguous()
        return key

    def __call__(self, obj: Any, depth: int = 0) -> Any:
        self.items += 1
        if depth > MAX_DEPTH or self.items > MAX_ITEMS:
            raise EncodeError("the value is nested too deeply or has too many items to send to the grader")
        if obj is None or isinstance(obj, bool | str):
            return obj
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else {"$float": repr(obj)}
        if isinstance(obj, np.generic):
            return self(obj.item(), depth + 1)
        if isinstance(obj, nn.Parameter) and id(obj) in self.param_refs:
            return {"$param": list(self.param_refs[id(obj)])}
        if isinstance(obj, torch.Tensor):
            return {"$tensor": [self.tensor(obj), bool(obj.requires_grad)]}
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind not in "biuf":
                raise EncodeError(f"a NumPy array of dtype {obj.dtype} cannot be sent to the grader")
            return {"$ndarray": self.tensor(torch.from_numpy(np.ascontiguousarray(obj)))}
        if isinstance(obj, torch.dtype):
            return {"$dtype": str(obj).removeprefix("torch.")}
        if isinstance(obj, nn.Module):
            return {"$module": module_state(obj, self)}
        if isinstance(obj, list):
            return [self(v, depth + 1) for v in obj]
        if isinstance(obj, tuple):  # NamedTuples and torch.Size too
            return {"$tuple": [self(v, depth + 1) for v in obj]}
        if isinstance(obj, set | frozenset):
            return {"$set": [self(v, depth + 1) for v in obj]}
        if isinstance(obj, dict):
            return {"$dict": [[self(k, depth + 1), self(v, depth + 1)] for k, v in obj.items()]}
        raise EncodeError(f"a value of type {type(obj).__name__} cannot be sent to the grader")


def module_state(module: nn.Module, encoder: _Encoder) -> dict:
    """What the grader needs to rebuild a module's state: tensors, requires_grad and train/eval flags.

    The tensors go into ``encoder``'s blob; the state names them by key.

    >>> state = module_state(nn.Linear(2, 1).eval(), _Encoder())
    >>> state["state"], state["training"]
    ({'weight': '0', 'bias': '1'}, {'': False})
    """
    return {
        "state": {name: encoder.tensor(t) for name, t in module.state_dict(keep_vars=False).items()},
        "requires_grad": {name: bool(p.requires_grad) for name, p in module.named_parameters(remove_duplicate=False)},
        "training": {name: bool(m.training) for name, m in module.named_modules(remove_duplicate=False)},
        "type": type(module).__name__,
    }


def encode(obj: Any, param_refs: dict[int, tuple[int, str]] | None = None, extra: dict | None = None) -> bytes:
    """``obj`` (and ``extra``: more encodable values by name) as one reply: header length, JSON header, safetensors.

    >>> reply = encode({"loss": 0.25, "w": torch.ones(2)})
    >>> size = int.from_bytes(reply[:8], "little")
    >>> json.loads(reply[8 : 8 + size])  # the tensor itself is in the safetensors blob after the header
    {'value': {'$dict': [['loss', 0.25], ['w', {'$tensor': ['0', False]}]]}}
    """
    enc = _Encoder(param_refs)
    doc = {"value": enc(obj), **{k: enc(v) for k, v in (extra or {}).items()}}
    header = json.dumps(doc, allow_nan=False).encode()
    blob = save_tensors(enc.tensors) if enc.tensors else b""
    return len(header).to_bytes(8, "little") + header + blob


# --------------------------------------------------------------------------- decode (runs in the grader)


class _Decoder:
    def __init__(self, tensors: dict[str, torch.Tensor], modules: list[nn.Module]):
        self.tensors = tensors
        self.modules = modules

    def tensor(self, key: Any) -> torch.Tensor:
        if not isinstance(key, str) or key not in self.tensors:
            raise DecodeError(f"reference to a missing tensor {key!r}")
        return self.tensors[key]

    def __call__(self, obj: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH + 2:
            raise DecodeError("nested too deeply")
        if obj is None or isinstance(obj, bool | int | float | str):
            return obj
        if isinstance(obj, list):
            return [self(v, depth + 1) for v in obj]
        if not isinstance(obj, dict) or len(obj) != 1:
            raise DecodeError(f"unexpected JSON object {str(obj)[:80]}")
        ((tag, body),) = obj.items()
        if tag == "$tuple":
            return tuple(self(v, depth + 1) for v in _list(body))
        if tag == "$set":
            return {self(v, depth + 1) for v in _list(body)}
        if tag == "$dict":
            pairs = [_list(p) for p in _list(body)]
            if any(len(p) != 2 for p in pairs):
                raise DecodeError("a $dict entry is not a [key, value] pair")
            return {self(k, depth + 1): self(v, depth + 1) for k, v in pairs}
        if tag == "$float":
            if body not in ("nan", "inf", "-inf"):
                raise DecodeError(f"bad $float {body!r}")
            return float(body)
        if tag == "$tensor":
            key, requires_grad = _list(body)
            t = self.tensor(key).clone()
            return t.requires_grad_(True) if requires_grad is True and t.is_floating_point() else t
        if tag == "$ndarray":
            return self.tensor(body).numpy().copy()
        if tag == "$dtype":
            dtype = getattr(torch, str(body), None)
            if not isinstance(dtype, torch.dtype):
                raise DecodeError(f"unknown dtype {body!r}")
            return dtype
        if tag == "$param":
            index, name = _list(body)
            if not (isinstance(index, int) and 0 <= index < len(self.modules)):
                raise DecodeError(f"parameter of unknown argument {index!r}")
            params = dict(self.modules[index].named_parameters(remove_duplicate=False))
            if name not in params:
                raise DecodeError(f"argument {index} has no parameter {name!r}")
            return params[name]
        if tag == "$module":
            return ModuleState(self, body)
        raise DecodeError(f"unknown tag {tag!r}")


def _list(obj: Any) -> list:
    if not isinstance(obj, list):
        raise DecodeError(f"expected a list, got {type(obj).__name__}")
    return obj


class ModuleState:
    """A module's state as the student's kernel sent it; :func:`apply_module_state` loads it into a module.

    The grader never gets the student's module object (its class could be anything), only this.

    >>> state = decode(encode(nn.Linear(2, 1)))["value"]
    >>> state
    <state of a Linear from the student's kernel>
    >>> sorted(state.state), state.requires_grad
    (['bias', 'weight'], {'weight': True, 'bias': True})
    """

    def __init__(self, decoder: _Decoder, body: Any):
        if not isinstance(body, dict) or not {"state", "requires_grad", "training"} <= set(body):
            raise DecodeError("malformed $module")
        self.state = {str(k): decoder.tensor(v) for k, v in dict(body["state"]).items()}
        self.requires_grad = {str(k): bool(v) for k, v in dict(body["requires_grad"]).items()}
        self.training = {str(k): bool(v) for k, v in dict(body["training"]).items()}
        self.type = str(body.get("type", "?"))

    def __repr__(self) -> str:
        return f"<state of a {self.type} from the student's kernel>"


def apply_module_state(module: nn.Module, state: ModuleState, what: str = "the module") -> None:
    """Load ``state`` into the grader's own ``module``; raise ValueError naming what does not match.

    >>> student = nn.Linear(2, 1).requires_grad_(False)
    >>> grader = nn.Linear(2, 1)
    >>> apply_module_state(grader, decode(encode(student))["value"])
    >>> torch.equal(grader.weight, student.weight), grader.weight.requires_grad
    (True, False)
    >>> apply_module_state(nn.Linear(3, 1), decode(encode(student))["value"], what="the head")
    Traceback (most recent call last):
    ...
    ValueError: the head: weight has shape (1, 2) torch.float32, expected (1, 3)
    """
    if not isinstance(state, ModuleState):
        raise ValueError(f"{what}: expected a torch module from the student's kernel, got {type(state).__name__}")
    own = module.state_dict()
    if set(own) != set(state.state):
        missing, extra = sorted(set(own) - set(state.state)), sorted(set(state.state) - set(own))
        raise ValueError(
            f"{what} is not the expected {type(module).__name__}: missing {missing[:5]}, unexpected {extra[:5]}"
        )
    for name, t in state.state.items():
        if own[name].shape != t.shape or own[name].dtype != t.dtype:
            raise ValueError(f"{what}: {name} has shape {tuple(t.shape)} {t.dtype}, expected {tuple(own[name].shape)}")
    module.load_state_dict({k: v.to(own[k].device) for k, v in state.state.items()})
    for name, p in module.named_parameters(remove_duplicate=False):
        if name in state.requires_grad:
            p.requires_grad_(state.requires_grad[name])
    for name, m in module.named_modules(remove_duplicate=False):
        if name in state.training:
            m.training = state.training[name]


def decode(data: bytes, modules: list[nn.Module] | None = None, max_bytes: int = 2**31) -> dict[str, Any]:
    """Parse a reply made by :func:`encode`; ``modules`` resolve ``$param`` references.

    Every byte comes from the student's process: anything but a well-formed reply is a
    :class:`DecodeError`, and nothing in it can run code.

    >>> decode(encode([1, float("inf")], extra={"missing": False}))
    {'value': [1, inf], 'missing': False}
    >>> forged = b'{"value": {"$pickle": "gASV..."}}'
    >>> decode(len(forged).to_bytes(8, "little") + forged)
    Traceback (most recent call last):
    ...
    ftlab.grading.codec.DecodeError: unknown tag '$pickle'
    """
    if len(data) > max_bytes:
        raise DecodeError(f"the reply is {len(data)} bytes, over the limit of {max_bytes}")
    if len(data) < 8:
        raise DecodeError("truncated reply")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise DecodeError("truncated reply header")
    try:
        doc = json.loads(data[8 : 8 + n])
    except ValueError as exc:
        raise DecodeError(f"the reply header is not JSON: {exc}") from None
    blob = data[8 + n :]
    try:
        tensors = load_tensors(blob) if blob else {}
    except Exception as exc:  # safetensors raises its own error types
        raise DecodeError(f"the reply's tensors are not valid safetensors: {exc}") from None
    if not isinstance(doc, dict):
        raise DecodeError("the reply header is not a JSON object")
    dec = _Decoder(tensors, list(modules or []))
    return {str(k): dec(v) for k, v in doc.items()}
