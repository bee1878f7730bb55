"""The core's descriptor table, and the typed records its results are made as.

Each record class is built here from the descriptors at import time: its fields, their
order and their docs are the core's (never copied by hand); its name, its truth value and
the first line of its doc come from the idiom table (_idiom.py). Ops that EMIT messages (a
subscription's listen) get a message class the same way, from their message fields. The extension is then told,
for every op, which class to make its records as and how Python users name its arguments
(for messages). Their types for mypy are in _records.pyi, generated from the same table by
scripts/gen_pyi.py (`make test` fails when it is stale).
"""
from __future__ import annotations

import collections
import operator
from typing import Any, Dict, List, Optional, cast

from . import _core, _idiom

#: The core's descriptor table (see redpat/describe.h), as _core.descriptors() gives it.
DESCRIPTORS: List[Dict[str, Any]] = _core.descriptors()
#: The same, by op name.
BY_NAME: Dict[str, Dict[str, Any]] = {d["name"]: d for d in DESCRIPTORS}


def _record_class(name: str, op: str, fields: List[Dict[str, Any]]) -> type:
    cls: Any = collections.namedtuple(name, [f["name"] for f in fields], module=__name__)
    lines = [_idiom.RECORD_DOCS.get(name, "The result of the op %s." % op), ""]
    units = {"ms": " (seconds)", "status": " (the exception, or None)"}
    lines += ["``%s``%s: %s" % (f["name"], units.get(f["type"], ""), f["doc"])
              for f in fields if f["doc"]]
    cls.__doc__ = "\n".join(lines).strip()
    truth = _idiom.TRUTH.get(name)
    if truth is not None:
        getter = operator.itemgetter([f["name"] for f in fields].index(truth))
        cls.__bool__ = lambda self: bool(getter(self))
    return cast(type, cls)


def _shared_class(classes: Dict[str, type], name: str, op: str,
                  fields: List[Dict[str, Any]]) -> type:
    """The class called name with these fields (made on first need; ops may share it)."""
    cls = classes.get(name)
    if cls is None:
        cls = classes[name] = _record_class(name, op, fields)
    elif list(getattr(cls, "_fields")) != [f["name"] for f in fields]:
        raise RuntimeError("redpat: %s and another op share the record %s but not its "
                           "fields" % (op, name))
    return cls


def _configure() -> Dict[str, type]:
    classes: Dict[str, type] = {}
    for d in DESCRIPTORS:
        record: Optional[type] = None
        message: Optional[type] = None
        if d["shape"] != "none":
            record = _shared_class(classes, _idiom.record_name(d["name"]), d["name"],
                                   d["fields"])
        if d["message_fields"]:
            message = _shared_class(classes, _idiom.message_name(d["name"]), d["name"],
                                    d["message_fields"])
        names = tuple(_idiom.arg_name(d["name"], a["name"]) for a in d["args"])
        _core.configure(d["name"], record, names, message)
    return classes


globals().update(_configure())
