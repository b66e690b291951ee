"""Where moto falls short of DynamoDB's guarantees, and how the local stack closes each gap.

1. Atomic requests. DynamoDB applies each request atomically; moto handles concurrent requests on
   threads without a lock, and its TransactWriteItems rolls back by restoring whole-table copies, so a
   transaction that fails next to one that succeeds can erase the winner's writes. Every moto request
   is therefore served under one lock, in-process (`mock_aws`) and in server mode alike.
2. Transaction cost. moto deep-copies every table a transaction touches, so transactions slow down
   as tables grow (about 3/s at 2,000 items). The replacement (moto_dynamodb.py) checks every
   condition first, then writes, keeping an undo record per touched item (and the stream's length)
   instead of a copy of each table: the same all-or-nothing outcome, at a cost that does not grow with
   the table.

3. The EventBridge envelope. moto's default target input leaves out `account`, which every event
   EventBridge delivers carries (and which consumers that validate the envelope require); the
   default template is given it back.

4. Queue depth. moto's SendMessage, and ReceiveMessage for every message it looks at, read one queue
   setting through a property that counts every message in the queue (visible, in flight, delayed),
   so a deep queue makes both quadratic: an archive replay of 7,000 events into an undrained queue
   took minutes. SendMessage gets the one attribute it reads without the counts, and the retention
   check of ReceiveMessage reads the retention period directly; both compute what moto computes.
   (ReceiveMessage still scans the queue once per call: linear in its depth, no longer quadratic.)
5. Query cost. moto's Query starts from every item of the table, sorted by key, and then keeps the
   partition it was asked for (or, on an index, the items whose index keys match) and sorts those again;
   the first sort makes every Query O(n log n) in the table's size, so the reconciler's index queries
   and the consumer's per-ride queries slowed a 10,000-change chaos run by an order of magnitude. During
   a Query, a table query starts from the asked partition alone and an index query from the items
   unsorted; moto's own filter and final sort still decide the result (a total order on the keys), so it
   is the result moto returns, at a cost that grows with the partition, not the table.

6. Target input paths. moto's event target input builds a JSONPath parser (a yacc table) per path per
   event: about 6 ms per event and target, most of the Pipe's time (130 ms per PutEvents of 10 events in
   a demo). Parsed paths are cached.
7. Replay windows. moto's `start_replay` replays the whole archive whatever EventStartTime and
   EventEndTime say; AWS replays the window only. The window is honoured.
8. Item serialization (moto_dynamodb.py). moto's JSON serializer answers every DynamoDB and DynamoDB Streams request by
   walking the botocore model, and for each AttributeValue asks its value picker for all ten members
   (S, N, B, ... BOOL) through its alias rules: 0.5 s to serialize a Scan of 400 items, 70 ms a
   GetRecords page, a third of a demo's server time. An AttributeValue whose every part is a string, a
   number, a boolean, a null, a list, a map or a string or number set, as moto stores them, is copied
   as it is: the JSON moto's walk gives for it, which tests/local/test_moto_patches.py holds to moto's
   own serializer on generated items. Anything else (binary, or a value moto keeps in another form)
   still takes moto's walk.
9. Dispatch. moto lists a response class's methods (inspect.getmembers) on every request to find the
   action's: 3% of a chaos run. The list is kept per class; moto adds no method to a class at run time.
10. Receipt handles. moto finds the message of a receipt handle (DeleteMessage, ChangeMessageVisibility)
    by building the list of every handle of every message in the queue, twice for a delete, and draws
    each new handle's 185 letters one `random.choice` at a time: with thousands of messages in flight
    (early events waiting for a repair) those lookups were 40% of a chaos run's consumer phase. Every
    handle moto hands out is indexed to its message, and a lookup checks by identity that the message is
    still in the queue; a handle the index does not place in the queue goes to moto's own code, which
    answers as it always did (an old handle of a deleted message, a foreign one). Handles are drawn
    with one `random.choices`: the same 185 lowercase letters.
11. Condition expressions. moto lexes a condition expression again for every request, trying seven
    regular expressions per token; an application sends the same few expressions with new values. The
    tokens of each expression are kept (up to 4,096 expressions) and every parse gets fresh copies of
    them; the values are still read from each request.
12. JSON errors. moto renders every error as an XML document first, and a JSON protocol's error then
    throws that body away for its JSON one. A JSON error skips the XML; an XML error is rendered as before.
    (And the transaction replacement above reads moto's message for a failed condition once, instead of
    building an exception, body and all, to read it.) In a 10,000-change chaos run, where every duplicate
    event is a cancelled transaction, those error bodies were a fifth of moto's TransactWriteItems time.
13. Index projections. For a KEYS_ONLY or INCLUDE index, moto converts the whole item to plain Python and
    back once per projected attribute (four times for the reconciler's CommitTime index, whose items carry
    the event). The projection is taken from the stored item when each projected value is a string or a
    number that conversion gives back unchanged, which is what moto's would hold; anything else takes
    moto's path.
14. Message groups. ReceiveMessage collects the group of every message in flight, again after each one
    whose visibility ran out, and reads them only on a FIFO queue; a standard queue skips the collection.

All are installed by `install()`, once, before any moto backend is used.

And one a run asks for:

15. Time. `clock_installed(clock)` makes moto's SQS read the local stack's clock (local/emulators/clock.py)
    for every timestamp it takes or compares: sending, delays, receiving, visibility timeouts,
    ChangeMessageVisibility, retention and the redrive to the dead-letter queue after maxReceiveCount
    receives. On a simulated clock a visibility timeout is over when the clock is advanced past it.
    DynamoDB stream records are stamped by the same clock, so the Pipe's record age is measured in it.
"""

import copy
import inspect
import random
import string
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cache, lru_cache, wraps
from typing import Any

from moto.core import responses as moto_responses
from moto.core import utils as moto_utils
from moto.core.botocore_stubber import BotocoreStubber
from moto.core.exceptions import JsonRESTError, _RESTError
from moto.core.serialize import SERVICE_SPECIFIC_SERIALIZERS
from moto.dynamodb.comparisons import ConditionExpressionParser
from moto.dynamodb.models import DynamoDBBackend, dynamo_type
from moto.dynamodb.models import table as dynamodb_tables
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import SecondaryIndex, Table
from moto.events.models import Replay
from moto.events.utils import EventTemplateParser
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.sqs import models as sqs_models
from moto.sqs.exceptions import InvalidParameterValue
from moto.sqs.models import Message, Queue, SQSBackend
from werkzeug.exceptions import HTTPException

from local.aws.moto_dynamodb import ItemJSONSerializer, transact_write_items
from local.emulators.clock import Clock, SimulatedClock

REQUEST_LOCK = threading.RLock()
_installed = False


def install() -> None:
    global _installed
    with REQUEST_LOCK:
        if _installed:
            return
        BotocoreStubber.process_request = _serialized(BotocoreStubber.process_request)  # type: ignore[method-assign]
        DomainDispatcherApplication.__call__ = _serialized(DomainDispatcherApplication.__call__)  # type: ignore[method-assign]
        DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
        EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE = EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE.replace(
            '"source": "<source>",', '"source": "<source>", "account": "<account>",'
        )
        assert '"<account>"' in EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE, "moto's envelope template changed"
        _cheap_queue_attributes_while_sending()
        _query_from_the_partition()
        _cached_target_input_paths()
        _replays_of_their_window()
        _receipt_handles_indexed()
        _condition_expressions_lexed_once()
        _json_errors_without_xml()
        _index_projections_from_the_item()
        _no_message_groups_on_standard_queues()
        moto_responses.method_names_from_class = cache(moto_utils.method_names_from_class)  # type: ignore[attr-defined]
        for service in ("dynamodb", "dynamodbstreams"):
            SERVICE_SPECIFIC_SERIALIZERS.setdefault(service, {})["json"] = ItemJSONSerializer
        _installed = True


def _cached_target_input_paths() -> None:
    import jsonpath_ng.ext

    # moto imports `parse` from the module on every call, so the cached one is what it gets.
    jsonpath_ng.ext.parse = lru_cache(maxsize=256)(jsonpath_ng.ext.parse)  # type: ignore[attr-defined]


def _replays_of_their_window() -> None:
    replay_all = Replay.replay_events

    def replay_window(self: Any, archive: Any) -> None:
        start, end = epoch_seconds(self.event_start_time), epoch_seconds(self.event_end_time)
        window = copy.copy(archive)
        window.events = [event for event in archive.events if start <= epoch_seconds(event.get("time")) < end]
        replay_all(self, window)

    Replay.replay_events = replay_window  # type: ignore[method-assign]


def epoch_seconds(value: Any) -> float:
    """A moment as moto keeps it (epoch seconds, as a number or a string) or as DynamoDB items hold it (ISO 8601)."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    raise ValueError(f"not a time: {value!r}")


def _serialized(function: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(function)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with REQUEST_LOCK:
            result = function(*args, **kwargs)
            # A WSGI response body may be a lazy iterable: materialise it while still holding the lock.
            return list(result) if isinstance(result, map | filter) else result

    return locked


_sending = threading.local()


def _cheap_queue_attributes_while_sending() -> None:
    full_attributes = Queue.attributes.fget  # type: ignore[attr-defined]
    send_message = SQSBackend.send_message

    def attributes(queue: Queue) -> dict[str, Any]:
        if getattr(_sending, "active", False):
            # What the full property holds for the one attribute SendMessage reads, minus the counting.
            if not queue.fifo_queue:
                return {}
            value = queue.content_based_deduplication  # type: ignore[attr-defined]
            return {"ContentBasedDeduplication": str(value).lower() if isinstance(value, bool) else value}
        return full_attributes(queue)  # type: ignore[no-any-return]

    @wraps(send_message)
    def sending(self: SQSBackend, *args: Any, **kwargs: Any) -> Any:
        _sending.active = True
        try:
            return send_message(self, *args, **kwargs)
        finally:
            _sending.active = False

    def retained(self: SQSBackend, queue_name: str, message: Any) -> bool:
        retention_seconds = int(self.get_queue(queue_name).message_retention_period)  # type: ignore[attr-defined]
        return bool(retention_seconds + message.sent_timestamp / 1000 > sqs_models.unix_time())  # type: ignore[attr-defined]

    Queue.attributes = property(attributes)  # type: ignore[assignment,method-assign]
    SQSBackend.send_message = sending  # type: ignore[method-assign]
    SQSBackend.is_message_valid_based_on_retention_period = retained  # type: ignore[method-assign]


_receipts: dict[str, Message] = {}
"""Every receipt handle moto handed out, to its message (handles are 185 random letters: unique)."""


def _receipt_handles_indexed() -> None:
    if Message.__eq__ is not object.__eq__:
        raise RuntimeError(
            "moto's SQS Message defines an equality of its own: the receipt index finds messages by identity"
        )
    mark_received = Message.mark_received
    delete_message = Queue.delete_message
    change_message_visibility = SQSBackend.change_message_visibility

    def marked(self: Message, visibility_timeout: int | None = None) -> None:
        mark_received(self, visibility_timeout)
        _receipts[self.receipt_handle] = self  # type: ignore[index]

    def deleting(self: Queue, receipt_handle: str) -> None:
        if receipt_handle in self.deleted_messages:
            return
        position = _position(self._messages, _receipts.get(receipt_handle))
        if position is None:
            delete_message(self, receipt_handle)
            return
        message = self._messages.pop(position)
        self.pending_messages.discard(message)
        self.deleted_messages.update(message.all_receipt_handles)  # type: ignore[arg-type]
        for handle in message.all_receipt_handles:  # answered from deleted_messages from now on
            _receipts.pop(handle, None)  # type: ignore[arg-type]

    def changing(self: SQSBackend, queue_name: str, receipt_handle: str, visibility_timeout: int) -> None:
        queue = self.get_queue(queue_name)
        position = _position(queue._messages, _receipts.get(receipt_handle))
        if position is None:
            change_message_visibility(self, queue_name, receipt_handle, visibility_timeout)
            return
        # moto's own body, for the message found.
        message = queue._messages[position]
        given = sqs_models.unix_time_millis() + int(visibility_timeout) * 1000  # type: ignore[attr-defined]
        if given - message.sent_timestamp > 43200 * 1000:  # type: ignore[operator]
            raise InvalidParameterValue(
                f"Value {visibility_timeout} for parameter VisibilityTimeout is invalid. Reason: Total "
                "VisibilityTimeout for the message is beyond the limit [43200 seconds]"
            )
        message.change_visibility(visibility_timeout)
        if message.visible and message in queue.pending_messages:
            queue.pending_messages.remove(message)

    Message.mark_received = marked  # type: ignore[method-assign]
    Queue.delete_message = deleting  # type: ignore[method-assign]
    SQSBackend.change_message_visibility = changing  # type: ignore[method-assign]
    sqs_models.generate_receipt_handle = lambda: "".join(random.choices(string.ascii_lowercase, k=185))  # type: ignore[attr-defined]


def _position(messages: list[Message], message: Message | None) -> int | None:
    """Where `message` is in `messages`, by identity; None if it is not there.

    `list.index` compares by identity for moto's Message, which defines no equality of its own
    (`_receipt_handles_indexed` refuses to install otherwise), and walks the list in C.
    """
    if message is None:
        return None
    try:
        return messages.index(message)
    except ValueError:
        return None


_querying = threading.local()


def _query_from_the_partition() -> None:
    sorted_items = Table.all_items
    query = Table.query

    def all_items(table: Table) -> list[Any]:
        scope = getattr(_querying, "scope", None)
        if scope is None:
            return sorted_items(table)
        if scope.index_name is None and scope.hash_key is not None:
            partition = table.items.get(scope.hash_key)
            if partition is None:
                return []
            return list(partition.values()) if table.range_key_attr else [partition]
        if table.range_key_attr:
            return [item for partition in table.items.values() for item in partition.values()]
        return list(table.items.values())

    signature = inspect.signature(query)

    @wraps(query)
    def querying(*args: Any, **kwargs: Any) -> Any:
        asked = signature.bind(*args, **kwargs).arguments
        _querying.scope = _QueryScope(asked["hash_key"], asked.get("index_name"))
        try:
            return query(*args, **kwargs)
        finally:
            _querying.scope = None

    Table.all_items = all_items  # type: ignore[method-assign,assignment]
    Table.query = querying  # type: ignore[method-assign]


def _condition_expressions_lexed_once() -> None:
    lex = ConditionExpressionParser._lex_condition_expression
    lexed: dict[str, tuple[Any, ...]] = {}

    def lexing(parser: ConditionExpressionParser) -> deque[Any]:
        expression = parser.condition_expression or ""
        nodes = lexed.get(expression)
        if nodes is None:
            nodes = tuple(lex(parser))  # raises for an expression it cannot lex, which is never kept
            if len(lexed) < _LEXED_EXPRESSIONS:
                lexed[expression] = nodes
        # The tokens are tuples; each gets a list of children of its own, as a fresh lexing gives it.
        return deque(node._replace(children=[]) for node in nodes)

    ConditionExpressionParser._lex_condition_expression = lexing  # type: ignore[method-assign,assignment]


_LEXED_EXPRESSIONS = 4096
"""A bound on the kept lexings: an application has a few dozen expressions, a fuzzer endless ones."""


def _json_errors_without_xml() -> None:
    xml_error = _RESTError.__init__

    def error(self: _RESTError, error_type: str, message: str, _: str = "", **kwargs: Any) -> None:
        if not isinstance(self, JsonRESTError):
            xml_error(self, error_type, message, _, **kwargs)
            return
        # What moto's __init__ sets before JsonRESTError replaces its XML body and type with JSON ones.
        HTTPException.__init__(self)
        self.error_type = error_type
        self.message = message

    _RESTError.__init__ = error  # type: ignore[method-assign]


def _index_projections_from_the_item() -> None:
    project = SecondaryIndex.project

    def projecting(index: SecondaryIndex, item: Item) -> Item:
        projection_type = (index.projection or {}).get("ProjectionType")
        if projection_type not in ("KEYS_ONLY", "INCLUDE"):
            return project(index, item)
        names = index.table_key_attrs + [key["AttributeName"] for key in index.schema]
        if projection_type == "INCLUDE":
            names += index.projection.get("NonKeyAttributes", [])
        kept = {name: item.attrs[name] for name in names if name in item.attrs}
        if not all(_same_after_moto_round_trip(value) for value in kept.values()):
            return project(index, item)
        return Item(item.hash_key, item.range_key, {name: value.to_json() for name, value in kept.items()})

    SecondaryIndex.project = projecting  # type: ignore[method-assign,assignment]


def _same_after_moto_round_trip(value: Any) -> bool:
    """A string or a number that moto's projection (to plain Python and back, through boto3) gives back as it is."""
    if value.type not in ("S", "N"):
        return False
    stored = value.to_json()
    try:
        return bool(dynamo_type.serializer.serialize(dynamo_type.deserializer.deserialize(stored)) == stored)
    except Exception:  # a number boto3 cannot hold: moto's own projection decides what happens to it
        return False


def _no_message_groups_on_standard_queues() -> None:
    groups = Queue.pending_message_groups.fget  # type: ignore[attr-defined]

    def pending_message_groups(queue: Queue) -> set[str]:
        # ReceiveMessage, the only reader, holds back a message of a pending group on a FIFO queue only.
        return groups(queue) if queue.fifo_queue else set()

    Queue.pending_message_groups = property(pending_message_groups)  # type: ignore[method-assign,assignment]


class _QueryScope:
    """What one Query asked for: its partition key on the table, or the index it reads."""

    def __init__(self, hash_key: Any, index_name: str | None) -> None:
        self.hash_key = hash_key
        self.index_name = index_name


@contextmanager
def clock_installed(clock: Clock) -> Iterator[None]:
    """moto's SQS reads `clock` inside the block (in this process, server threads included), then its own again.

    moto.sqs.models takes every timestamp through its module-level `unix_time` and `unix_time_millis`,
    so those two are what is replaced; so is the `utcnow` that stamps DynamoDB stream records. Blocks
    nest: leaving one gives back the clock it replaced.
    On a `SimulatedClock` a long poll is refused: moto's wait loop waits until its clock passes the end
    of the poll, which a clock that only its driver advances never does (receive with WaitTimeSeconds=0).
    """

    def unix_time(dt: Any = None) -> float:
        return clock.now() if dt is None else moto_utils.unix_time(dt)

    def unix_time_millis(dt: Any = None) -> float:
        return clock.now() * 1000.0 if dt is None else moto_utils.unix_time_millis(dt)

    def utcnow() -> datetime:
        return clock.utc_now().replace(tzinfo=None)  # naive, as moto's own

    receive_message = SQSBackend.receive_message

    @wraps(receive_message)
    def receive_without_waiting(self: SQSBackend, queue_name: str, count: int, wait: int, *args: Any) -> Any:
        if wait:
            raise ValueError(
                f"ReceiveMessage waits {wait} s on a simulated clock, which only its driver "
                "advances: receive with WaitTimeSeconds=0"
            )
        return receive_message(self, queue_name, count, wait, *args)

    replacements: list[tuple[Any, str, Any]] = [
        (sqs_models, "unix_time", unix_time),
        (sqs_models, "unix_time_millis", unix_time_millis),
        (dynamodb_tables, "utcnow", utcnow),
    ]
    if isinstance(clock, SimulatedClock):
        replacements.append((SQSBackend, "receive_message", receive_without_waiting))
    with REQUEST_LOCK:
        saved = [(owner, name, getattr(owner, name)) for owner, name, _ in replacements]
        for owner, name, value in replacements:
            setattr(owner, name, value)
    try:
        yield
    finally:
        with REQUEST_LOCK:
            for owner, name, value in saved:
                setattr(owner, name, value)
