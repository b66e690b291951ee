"""The account on this machine: template.yaml read as CloudFormation would, its resources created on moto.

- `template.py`: the SAM-translated template, intrinsics resolved (the one list of resources);
- `dynamodb.py`, `messaging.py`: a creator per resource family (tables; queues, buses, rules);
- `stack.py`: moto's server started and every resource created, the outputs file written;
- `moto_patches.py`: every gap between moto and AWS closed, listed and installed in one place
  (`moto_dynamodb.py`: the two DynamoDB pieces it replaces whole, the transaction and the item serializer);
- `transport.py`: how boto3 reaches moto (HTTP, or in-process);
- `functions.py`, `context.py`: the template's functions run in this process.

Not here: what moto stores but never runs (local/emulators/).
"""
