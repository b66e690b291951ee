"""Every seam through which chaos's faults enter the code under test, in one place.

Each is a parameter or a small protocol the code declares for any caller; chaos replaces no method and
patches no module of the code under test. The injector modules import their seams from here.

- client -> API: `api_handler(service)` (rideonce/handlers/api.py), reached through
  `ApiCaller(handler=)`: each client's `SeededRideService` (api_faults.py).
- API -> tables: `RideService(rides_store, keys, make_id=)` (rideonce/services/rides.py): a
  `CrashingRideStore`, `LinedUpClaims` and seeded ride ids (api_faults.py).
- stream -> Pipe -> bus: `PipeRunner(streams=, events=, around_delivery=)` (local/emulators/pipes/):
  `FaultyStreams`, `FaultyEventBridge` and `RelayFaults.around_delivery` (relay_faults.py).
- bus -> queue: the consumer queue itself, drained by `Capture`: deliveries doubled, poison bodies and an
  archive replay (bus_faults.py).
- queue -> consumer: `batch_handler(record_handler, processor)` and `handle_record(record, consumer,
  visibility)` with a `RecordConsumer` (rideonce/handlers/consumer.py): `FaultedConsumer`, an SQS
  client on moto's queue for the visibility and a `FailureCounter` (consumer_faults.py, downstream.py); the
  SQS event source's `around_invoke` and `settles` hooks (local/emulators/event_source.py): two consumers
  of one message, crashed invocations and lost deletes (downstream.py); and each design's
  `Steps` (local/designs/steps.py): `ChaosSteps` (consumer_faults.py).
- the reconciler: `scheduled_handler(reconciler)` (rideonce/handlers/reconciler.py): the reconciler on a
  design's projection table (reconcile.py).
- every function: `LocalFunction.invoke(event, handler=)` (local/aws/functions.py): its handler built
  over the above.

One replacement remains, outside the code under test: Powertools idempotency reads `datetime.now()` and
takes no clock, so the Powertools design runs in simulated time through
`local.designs.powertools.powertools_on`. moto's own gaps are closed in local/aws/moto_patches.py alone.
"""

from local.aws.functions import LocalFunction
from local.designs.steps import CrashPoint, Steps
from local.emulators.pipes.runner import PipeRunner
from local.emulators.pipes.target import AroundDelivery, TargetFailed
from local.workload.traffic import ApiCaller
from rideonce.dal.idempotency import IdempotencyStore
from rideonce.dal.rides import RideStore
from rideonce.handlers.api import api_handler
from rideonce.handlers.consumer import RecordConsumer, batch_handler, handle_record
from rideonce.handlers.reconciler import scheduled_handler
from rideonce.services.rides import RideService

__all__ = [
    "ApiCaller",
    "AroundDelivery",
    "CrashPoint",
    "IdempotencyStore",
    "LocalFunction",
    "PipeRunner",
    "RecordConsumer",
    "RideService",
    "RideStore",
    "Steps",
    "TargetFailed",
    "api_handler",
    "batch_handler",
    "handle_record",
    "scheduled_handler",
]
