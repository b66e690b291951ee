"""W3C trace context for the outbox: the caller's `traceparent`, else one derived from the X-Ray trace."""

import re
import secrets

_TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
_XRAY = re.compile(r"Root=1-([0-9a-f]{8})-([0-9a-f]{24})(?:;Parent=([0-9a-f]{16}))?(?:;Sampled=([01]))?")


def traceparent_for(header: str | None, xray_trace_id: str | None) -> str:
    """Keep the request's trace when it is valid W3C; else continue the X-Ray trace; else start a new one."""
    if header and _TRACEPARENT.match(header.strip().lower()):
        return header.strip().lower()
    if xray_trace_id and (match := _XRAY.search(xray_trace_id)):
        epoch, unique, parent, sampled = match.groups()
        return f"00-{epoch}{unique}-{parent or secrets.token_hex(8)}-{'01' if sampled == '1' else '00'}"
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"
