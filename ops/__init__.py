"""Operations on a rideonce stack, local or deployed: redrive, republish, replay, reconcile, audit, trace.

`python -m ops --help` (or `make ops ARGS="--help"`) lists the commands.
"""
