"""Values sent to and from workers as plain data, whatever name this library was imported under.

ComfyUI imports a node pack under its folder's path (the pack's `dimx_core` is `/…/custom_nodes/pack.dimx_core`), a
name no worker process can import, so a VideoRequest pickled as it is would not load in a worker. On the wire a
dataclass of this library is its module path inside the library and its fields; tensors, numbers, strings and paths
go as they are (tensors as copies of their own: a view of a frame batch would carry the whole batch).
"""
from __future__ import annotations

import dataclasses
import importlib
from pathlib import PurePath

import torch

LIBRARY = __name__.rsplit(".distributed.", 1)[0]  # "dimx_core", or the name the host imported the library under


def encode(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        module = type(value).__module__
        if not module.startswith(LIBRARY + "."):
            raise TypeError(f"{type(value).__name__} is not one of this library's values; it cannot go to a worker")
        return {"__dataclass__": f"{module[len(LIBRARY) + 1:]}:{type(value).__qualname__}",
                "fields": {field.name: encode(getattr(value, field.name)) for field in dataclasses.fields(value)}}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(item) for item in value]}
    if isinstance(value, list):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {"__dict__": [(encode(key), encode(item)) for key, item in value.items()]}
    if value is None or isinstance(value, (bool, int, float, str, PurePath)):
        return value
    raise TypeError(f"a {type(value).__name__} cannot go to a worker (plain data, paths, tensors and the library's "
                    "values only)")


def decode(value):
    if isinstance(value, list):
        return [decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    if "__tuple__" in value:
        return tuple(decode(item) for item in value["__tuple__"])
    if "__dict__" in value:
        return {decode(key): decode(item) for key, item in value["__dict__"]}
    module, _, name = value["__dataclass__"].partition(":")
    cls = getattr(importlib.import_module(f"{LIBRARY}.{module}"), name)
    fields = {key: decode(item) for key, item in value["fields"].items()}
    init = {field.name for field in dataclasses.fields(cls) if field.init}
    made = cls(**{key: item for key, item in fields.items() if key in init})
    for key in fields.keys() - init:  # fields a dataclass computes itself (init=False) keep their sent value
        object.__setattr__(made, key, fields[key])
    return made
