"""The consumer queue, emulated in simulated time: a standard SQS queue as the Lambda event source uses it.

Why a second queue beside moto's: a 120 s visibility timeout or a six-hour wait must cost nothing, and
every consumer design must see the same deliveries in the same order. It keeps the semantics the
ConsumerFunction relies on: receives counted, the visibility timeout, ChangeMessageVisibility with the
newest receipt handle, the dead-letter queue after maxReceiveCount (moved at receive time, as moto does).
"""

import heapq
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from local.aws.template import REGION


class SimClock:
    """Epoch seconds that only move when told: waits (visibility timeouts, hours before a replay) cost nothing."""

    def __init__(self, start: float) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def advance_to(self, moment: float) -> None:
        self._now = max(self._now, moment)

    def utc_now(self) -> datetime:
        return datetime.fromtimestamp(self._now, UTC)


@dataclass
class SimMessage:
    message_id: str
    body: str
    subject: str
    poison: bool
    sent_at: float
    visible_at: float
    receive_count: int = 0
    first_received_at: float | None = None
    token: int = 0


class SimQueue:
    """A standard SQS queue as `lambda_sqs.SqsPoller` relies on it, in simulated time.

    Receiving makes a message invisible for the visibility timeout and counts the receive; a message that
    was received maxReceiveCount times moves to the dead-letter queue instead of being received again (as
    moto and SQS do it, at receive time). Order is send order, retries when they become visible again.
    """

    def __init__(
        self, clock: SimClock, visibility_timeout: float, max_receive_count: int, dead_letter: "SimQueue | None"
    ) -> None:
        self._clock = clock
        self.visibility_timeout = visibility_timeout
        self.max_receive_count = max_receive_count
        self.dead_letter = dead_letter
        self._messages: dict[str, SimMessage] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._order = 0
        self.moved_to_dead_letter = 0

    def __len__(self) -> int:
        return len(self._messages)

    def send(self, body: str, subject: str, poison: bool, delay: float = 0.0) -> SimMessage:
        now = self._clock.now()
        message = SimMessage(str(uuid.uuid4()), body, subject, poison, now, now + delay)
        self._add(message)
        return message

    def receive_again(self, message: SimMessage) -> None:
        """`message`, already received, is received once more (by a second consumer): it counts, as in SQS."""
        message.receive_count += 1
        self._make_invisible(message)

    def receive(self, limit: int) -> list[SimMessage]:
        now = self._clock.now()
        received: list[SimMessage] = []
        while self._heap and len(received) < limit and self._heap[0][0] <= now:
            _, token, message_id = heapq.heappop(self._heap)
            message = self._messages.get(message_id)
            if message is None or message.token != token:
                continue
            if self.dead_letter is not None and message.receive_count >= self.max_receive_count:
                del self._messages[message_id]
                self.dead_letter._add(SimMessage(message_id, message.body, message.subject, message.poison, now, now))
                self.moved_to_dead_letter += 1
                continue
            message.receive_count += 1
            if message.first_received_at is None:
                message.first_received_at = now
            self._make_invisible(message)
            received.append(message)
        return received

    def delete(self, message: SimMessage) -> None:
        self._messages.pop(message.message_id, None)

    def change_visibility(self, receipt_handle: str, seconds: float) -> None:
        """ChangeMessageVisibility: visible again `seconds` from now. Only the newest receipt handle counts."""
        message_id, _, count = receipt_handle.rpartition("#")
        message = self._messages.get(message_id)
        if message is None or str(message.receive_count) != count:
            raise ValueError(f"ReceiptHandleIsInvalid: {receipt_handle}")
        message.visible_at = self._clock.now() + seconds
        self._push(message)

    def next_visible_at(self) -> float | None:
        while self._heap:
            visible_at, token, message_id = self._heap[0]
            message = self._messages.get(message_id)
            if message is not None and message.token == token:
                return visible_at
            heapq.heappop(self._heap)
        return None

    def take_all(self) -> list[SimMessage]:
        """Everything in the queue, removed from it (a redrive's source)."""
        messages = sorted(self._messages.values(), key=lambda message: message.token)
        self._messages.clear()
        self._heap.clear()
        return messages

    def visible_count(self) -> int:
        """Messages a receive could return now."""
        now = self._clock.now()
        return sum(1 for message in self._messages.values() if message.visible_at <= now)

    def messages(self) -> list[SimMessage]:
        return sorted(self._messages.values(), key=lambda message: message.token)

    def subject_of(self, message_id: str) -> str:
        message = self._messages.get(message_id)
        return message.subject if message else ""

    def _make_invisible(self, message: SimMessage) -> None:
        message.visible_at = self._clock.now() + self.visibility_timeout
        self._push(message)

    def _add(self, message: SimMessage) -> None:
        self._messages[message.message_id] = message
        self._push(message)

    def _push(self, message: SimMessage) -> None:
        self._order += 1
        message.token = self._order
        heapq.heappush(self._heap, (message.visible_at, self._order, message.message_id))


def lambda_record(message: SimMessage, queue_arn: str) -> dict[str, Any]:
    """The SQS record Lambda builds for a simulated message (as `lambda_sqs.SqsPoller._record`)."""
    return {
        "messageId": message.message_id,
        "receiptHandle": f"{message.message_id}#{message.receive_count}",
        "body": message.body,
        "attributes": {
            "ApproximateReceiveCount": str(message.receive_count),
            "SentTimestamp": str(int(message.sent_at * 1000)),
            "SenderId": "AIDAEVENTBRIDGE",
            "ApproximateFirstReceiveTimestamp": str(int((message.first_received_at or message.sent_at) * 1000)),
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


class SimSqs:
    """The one SQS call the consumer function makes, ChangeMessageVisibility, served by a `SimQueue`."""

    def __init__(self, queue: SimQueue) -> None:
        self._queue = queue

    def change_message_visibility(self, *, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int) -> dict[str, Any]:
        self._queue.change_visibility(ReceiptHandle, VisibilityTimeout)
        return {}
