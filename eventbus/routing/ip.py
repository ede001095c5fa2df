"""IP address literals as the pattern language reads them (spec R3.4, R8).

Only two shapes are tried: four dot-separated digit runs (IPv4), or hex digits and colons with at least one
colon (IPv6). Anything else, including IPv4-mapped IPv6 with a dotted tail, is not an address.
"""

from __future__ import annotations

import re
from collections.abc import Callable

IPV4_BITS = 32
IPV6_BITS = 128

# Four dot-separated decimal runs; a leading zero is ambiguous (octal or decimal?), so such literals are refused.
_IPV4_SHAPE = re.compile(r"(?:(?:0|[1-9][0-9]{0,2})\.){3}(?:0|[1-9][0-9]{0,2})")
_IPV6_SHAPE = re.compile(r"[0-9a-fA-F:]*:[0-9a-fA-F:]*")
_MASK_BITS = re.compile(r"[+-]?[0-9]{1,1000}")  # a bound keeps int() within Python's digit limit
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def parse_ip(text: str) -> tuple[int, int] | None:
    """``(family_bits, address)`` for an IPv4/IPv6 literal of an accepted shape, else ``None``."""
    if _IPV4_SHAPE.fullmatch(text):
        family_bits = IPV4_BITS
    elif _IPV6_SHAPE.fullmatch(text):
        family_bits = IPV6_BITS
    else:
        return None
    try:
        packed = _packer(family_bits)(text)
    except OSError:  # an octet over 255, two "::", a group of five hex digits...
        return None
    return family_bits, int.from_bytes(packed, "big")


_PACKERS: dict[int, Callable[[str], bytes]] = {}


def _packer(family_bits: int) -> Callable[[str], bytes]:
    """``inet_pton`` for the family; socket is imported on first use, as only IP matching needs it."""
    packer = _PACKERS.get(family_bits)
    if packer is None:
        import socket
        from functools import partial

        family = socket.AF_INET if family_bits == IPV4_BITS else socket.AF_INET6
        packer = _PACKERS[family_bits] = partial(socket.inet_pton, family)
    return packer


def parse_cidr(text: str) -> tuple[int, int, int]:
    """``(family_bits, network, prefix_bits)`` of a CIDR block; ``ValueError`` names what is wrong (R8.1)."""
    if text.count("/") != 1:
        raise ValueError("Malformed CIDR, one '/' required")
    address_text, bits_text = text.split("/")
    # event-ruler reads the bits with Java's Integer.parseInt: a sign is allowed, more than 32 bits are not.
    if not _MASK_BITS.fullmatch(bits_text) or not _INT_MIN <= int(bits_text) <= _INT_MAX:
        raise ValueError("Malformed CIDR, mask bits must be an integer")
    prefix_bits = int(bits_text)
    if prefix_bits < 0:
        raise ValueError("Malformed CIDR, mask bits must not be negative")
    parsed = parse_ip(address_text)
    if parsed is None:
        raise ValueError(f"Nonstandard IP address: {address_text}")
    family_bits, address = parsed
    # The limits below are event-ruler's (a single address is written as a plain string instead).
    if family_bits == IPV4_BITS and prefix_bits > 31:
        raise ValueError("IPv4 mask bits must be < 32")
    if family_bits == IPV6_BITS and prefix_bits > 127:
        raise ValueError("IPv6 mask bits must be < 128")
    return family_bits, network_of(address, family_bits, prefix_bits), prefix_bits


def network_of(address: int, family_bits: int, prefix_bits: int) -> int:
    """The address with its host bits cleared, shifted down to the prefix (host bits are ignored, R8.1)."""
    return address >> (family_bits - prefix_bits)
