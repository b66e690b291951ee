#!/usr/bin/env bash
# Regenerates the events AWS services send, exactly as the SAM CLI writes them. The tests adapt each
# minimally (tests/integration/test_generated_events.py says how) and never edit these files.
# Run from the repository root: tests/events/generate.sh [output directory, default tests/events]
set -euo pipefail
export AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing SAM_CLI_TELEMETRY=0
sam=.venv/bin/sam
out=${1:-tests/events}
$sam local generate-event apigateway http-api-proxy --method POST --path rides \
  --body '{"riderId":"rider-1","pickup":{"lat":52.52,"lng":13.405},"dropoff":{"lat":52.5163,"lng":13.3777}}' \
  > $out/http-api-proxy.json
$sam local generate-event sqs receive-message --queue-name RideEventsQueue > $out/sqs-receive-message.json
$sam local generate-event dynamodb update > $out/dynamodb-update.json
