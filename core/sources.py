"""Where a login attempt comes from, as the throttles count it (dashboard.accounts, ingest.http).

An IPv4 address is one source. An IPv6 address is counted by its /64: one subscriber's line or
one host is given a whole /64 (RFC 6177), so keying the full address would hand a guesser 2^64
fresh budgets. An IPv4-mapped IPv6 address is its IPv4 address. Anything that is not an address
(a unix socket, "?") is counted as written."""
from __future__ import annotations

import ipaddress


def throttle_source(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
