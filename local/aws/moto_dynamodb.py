"""The two pieces of moto's DynamoDB that moto_patches.install replaces whole, not wraps.

- `transact_write_items` (moto_patches item 2): every condition checked, then every write, with an undo
  record per touched item instead of moto's copy of every table the transaction touches;
- `ItemJSONSerializer` (item 8): an answer's items copied as they are stored instead of walked member by
  member through moto's generic serializer.

tests/local/test_moto_patches.py holds the transaction to DynamoDB's all-or-nothing outcome and the
serializer to moto's own JSON.
"""

import copy
from collections.abc import Callable
from functools import cache
from typing import Any

from moto.core.serialize import JSONSerializer
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

_OPERATIONS = {"ConditionCheck", "Put", "Delete", "Update"}


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """TransactWriteItems with DynamoDB's semantics: every condition holds and all writes land, or none."""
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    plan: list[tuple[str, dict[str, Any], Table, dict[str, Any]]] = []
    seen: set[tuple[str, str]] = set()
    errors: list[Any] = []
    for entry in transact_items:
        if len(entry) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(entry.items()))
        if op_type not in _OPERATIONS:
            raise ValueError("Unsupported transaction operation")
        table = self.get_table(op["TableName"])
        key = _key_of(table, op_type, op)
        marker = (table.name, str(sorted(key.items())))
        if marker in seen:
            raise MultipleTransactionsException()
        seen.add(marker)
        current = self.get_item(table.name, key)
        errors.append(_condition_error(op, current))
        plan.append((op_type, op, table, key))
    if any(code is not None for code, _, _ in errors):
        raise TransactionCanceledException(errors)
    undo: list[Callable[[], None]] = []
    try:
        for op_type, op, table, key in plan:
            undo.append(_undo_for(self, table, key))
            _write(self, op_type, op, table, key)
    except BaseException:
        for step in reversed(undo):
            step()
        raise


def _key_of(table: Table, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return op["Key"]  # type: ignore[no-any-return]
    attrs = op["Item"]
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def _condition_error(op: dict[str, Any], current: Any) -> tuple[Any, Any, Any]:
    expression = op.get("ConditionExpression")
    if expression is None:
        return (None, None, None)
    condition = get_filter_expression(
        expression, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
    )
    if condition.expr(current):
        return (None, None, None)
    old = (
        current.to_json()["Attributes"]
        if current and op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD"
        else None
    )
    return ("ConditionalCheckFailed", _condition_failed_message(), old)


@cache
def _condition_failed_message() -> str:
    """moto's message for a failed condition, read once: building the exception renders its whole body."""
    return str(ConditionalCheckFailed().message)


def _write(backend: DynamoDBBackend, op_type: str, op: dict[str, Any], table: Table, key: dict[str, Any]) -> None:
    """Apply one write whose condition was already checked under the same lock."""
    names = op.get("ExpressionAttributeNames") or {}
    values = op.get("ExpressionAttributeValues") or {}
    if op_type == "Put":
        backend.put_item(table.name, op["Item"])
    elif op_type == "Delete":
        backend.delete_item(table.name, key)
    elif op_type == "Update":
        backend.update_item(
            table.name,
            key,
            update_expression=op["UpdateExpression"],
            expression_attribute_names=names,
            expression_attribute_values=values,
        )


def _undo_for(backend: DynamoDBBackend, table: Table, key: dict[str, Any]) -> Callable[[], None]:
    """Restore one item, and the table's stream, to how they are now."""
    hash_value, range_value = backend.get_keys_value(table, key)
    before = copy.deepcopy(table.get_item(hash_value, range_value))
    stream_length = len(table.stream_shard.items) if table.stream_shard is not None else 0

    def restore() -> None:
        bucket: Any = table.items[hash_value] if table.has_range_key else table.items
        slot = range_value if table.has_range_key else hash_value
        if before is None:
            bucket.pop(slot, None)
        else:
            bucket[slot] = before
        if table.has_range_key and not table.items[hash_value]:
            table.items.pop(hash_value, None)
        if table.stream_shard is not None:
            del table.stream_shard.items[stream_length:]

    return restore


_SCALARS = frozenset({"S", "N"})
_FLAGS = frozenset({"BOOL", "NULL"})
_SETS = frozenset({"SS", "NS"})


class _NotPlain(Exception):
    """An AttributeValue the copy does not take: moto's walk serializes it."""


def plain_attribute(value: Any) -> dict[str, Any]:
    """The JSON moto's serializer gives for an AttributeValue without binary, by copying it.

    Raises _NotPlain for anything else: binary (moto's walk base64-encodes it) or a value moto keeps in
    another form than the wire's (a number as a number, a set as a set).
    """
    if type(value) is not dict or len(value) != 1:
        raise _NotPlain
    ((kind, inner),) = value.items()
    if kind in _SCALARS and type(inner) is str:
        return {kind: inner}
    if kind in _FLAGS and type(inner) is bool:
        return {kind: inner}
    if kind == "M" and type(inner) is dict:
        return {"M": {name: plain_attribute(member) for name, member in inner.items()}}
    if kind == "L" and type(inner) is list:
        return {"L": [plain_attribute(member) for member in inner]}
    if kind in _SETS and type(inner) is list and all(type(member) is str for member in inner):
        return {kind: list(inner)}
    raise _NotPlain


class ItemJSONSerializer(JSONSerializer):
    """moto's JSON serializer for DynamoDB and its streams, with AttributeValues copied instead of walked."""

    def _serialize_type_structure(self, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key and shape.name == "AttributeValue":
            try:
                serialized[self.get_serialized_name(shape, key)] = plain_attribute(value)
            except _NotPlain:
                pass
            else:
                return
        super()._serialize_type_structure(serialized, value, shape, key)
