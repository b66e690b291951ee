"""Hypothesis strategies for what clients and queues can send: any JSON, and valid values with one part broken."""

from typing import Any

from hypothesis import strategies as st

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
"""Any JSON value (no NaN or Infinity: they are not JSON)."""


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a member or element of a JSON value, the value itself included."""
    found = [prefix]
    if isinstance(value, dict):
        for name, child in value.items():
            found += paths(child, (*prefix, name))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of `value` with the part at `path` replaced by `new` (or removed, when `new` is `REMOVE`)."""
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict):
        copy = dict(value)
        if not rest and new is REMOVE:
            copy.pop(head)
        else:
            copy[head] = replaced(value[head], tuple(rest), new)
        return copy
    copy_list = list(value)
    if not rest and new is REMOVE:
        copy_list.pop(head)
    else:
        copy_list[head] = replaced(value[head], tuple(rest), new)
    return copy_list


REMOVE = object()


@st.composite
def broken(draw: st.DrawFn, valid: Any) -> Any:
    """`valid` with one part replaced by any JSON value, or removed."""
    path = draw(st.sampled_from(paths(valid)))
    new = draw(JSON | st.just(REMOVE)) if path else draw(JSON)
    return replaced(valid, path, new)
