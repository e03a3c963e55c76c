"""The zygote's protocol (no zygote, no root): every message survives encode/decode; nothing else decodes."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wasmlab.runtime.store.state import ExitRecord
from wasmlab.runtime.zygote import protocol as p

MESSAGES = [p.Create, p.Run, p.Pin, p.Settle, p.Ping, p.Hello, p.Fatal, p.Reply, p.ContainerCreated, p.ContainerExited,
            p.ContainerReaped, p.ContainerError]

# JSON-shaped values, as fields carry them (floats finite: JSON has no NaN).
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53), st.text(max_size=8),
                     st.floats(allow_nan=False, allow_infinity=False))
_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                     max_leaves=8)
_exit = st.builds(ExitRecord, exit_code=st.one_of(st.none(), st.integers(0, 255)),
                  signal=st.one_of(st.none(), st.integers(1, 64)), oom_killed=st.booleans(),
                  finished_at=st.floats(0, 2e9), max_rss_kb=st.integers(0, 2**40),
                  user_ms=st.floats(0, 1e6), system_ms=st.floats(0, 1e6))

# Field types as the protocol module spells them (its annotations are strings).
_BY_TYPE: dict[str, st.SearchStrategy[Any]] = {
    "int": st.integers(0, 2**31), "str": st.text(max_size=16), "bool": st.booleans(),
    "int | None": st.one_of(st.none(), st.integers(0, 2**31)), "str | None": st.one_of(st.none(), st.text(max_size=8)),
    "dict[str, str]": st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    "dict[str, float]": st.dictionaries(st.text(max_size=8), st.floats(0, 1e6), max_size=3),
    "dict[str, int]": st.dictionaries(st.text(max_size=8), st.integers(0, 2**40), max_size=3),
    "dict[str, Any]": st.dictionaries(st.text(max_size=8), _json, max_size=3),
    "dict[str, Any] | None": st.one_of(st.none(), st.dictionaries(st.text(max_size=8), _json, max_size=3)),
    "list[str]": st.lists(st.text(max_size=8), max_size=3), "ExitRecord": _exit,
}


def _message(cls: type[p.Message]) -> st.SearchStrategy[p.Message]:
    fields = {f.name: _BY_TYPE[str(f.type)] for f in dataclasses.fields(cls)}
    return st.fixed_dictionaries(fields).map(lambda kw: cls(**kw))


def test_every_message_type_is_declared_once() -> None:
    assert sorted(p._TYPES) == sorted(cls.TYPE for cls in MESSAGES)
    assert len({cls.TYPE for cls in MESSAGES}) == len(MESSAGES)


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_message_round_trips(cls: type[p.Message], data: st.DataObject) -> None:
    msg = data.draw(_message(cls))
    back = p.decode(msg.encode())
    assert type(back) is cls and back == msg


def test_an_exit_record_travels_nested_and_comes_back_typed() -> None:
    rec = ExitRecord(exit_code=137, signal=9, oom_killed=True, finished_at=1.5, max_rss_kb=2048)
    raw = json.loads(p.ContainerExited("c1", rec, rid=4).encode())
    assert raw["type"] == "exit" and raw["exit"] == dataclasses.asdict(rec)
    back = p.decode(json.dumps(raw).encode())
    assert isinstance(back, p.ContainerExited) and isinstance(back.exit, ExitRecord) and back.exit == rec
    unknown = p.decode(p.ContainerReaped("c2", ExitRecord(exit_code=None)).encode())
    assert isinstance(unknown, p.ContainerReaped) and unknown.exit.exit_code is None  # "nobody could know" stays


def test_as_event_is_the_subscriber_dict() -> None:
    ev = p.as_event(p.ContainerExited("c1", ExitRecord(exit_code=7), rid=3, state={"x": 1}))
    assert ev["event"] == "exit" and ev["exit"]["exit_code"] == 7 and "rid" not in ev and "state" not in ev


@pytest.mark.parametrize("data", [
    b'{"type": "launch-missiles", "rid": 1}', b'{"rid": 1}', b'[1, 2]', b'"create"', b'null', b'not json',
    b'{"type": 5}', b'{"type": ["create"]}',
    b'{"type": "ping"}',                                                        # a field missing
    b'{"type": "hello", "pid": 1, "from_a_newer_zygote": true}',                # a field unknown
    b'{"type": "exit", "id": "c1", "exit": {"exit_code": 0, "joules": 3}}',     # the nested record too
])
def test_anything_else_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        p.decode(data)


@given(st.dictionaries(st.sampled_from(["type", "rid", "id", "pid", "exit", "bundle", "ok", "extra"]),
                       st.one_of(_json, st.sampled_from(sorted(p._TYPES))), max_size=5))
def test_arbitrary_json_objects_decode_or_raise_value_error(body: dict[str, Any]) -> None:
    try:
        p.decode(json.dumps(body).encode())
    except ValueError:
        pass
