"""INCRBYFLOAT's arithmetic: Redis's `long double` (x87 80-bit), emulated exactly.

On the request's journey this serves one command, `INCRBYFLOAT key 0.1`, and exists
because a Redis user can see the difference. Redis parses both numbers with `strtold`,
adds them as 80-bit extended floats (a 64-bit significand, 11 more bits than a Python
float) and prints the sum with `"%.17Lf"` before trimming trailing zeros. So

    SET f 512.2425703676417 ; INCRBYFLOAT f 0   →  "512.24257036764169998" in Redis

where Python's float repr would say "512.2425703676417". We get Redis's digits by doing
the same steps on exact fractions: round each value to the nearest number with a 64-bit
significand (ties to even, as the FPU does), add, round again, print 17 decimals.

Simpler than the real thing: no hexadecimal float input ("0x1p3", which strtold takes),
no subnormals, and platforms where long double is 64- or 128-bit are not imitated.
"""

from __future__ import annotations

import math
from fractions import Fraction

# Digits in an x87 extended float's significand, and its largest binary exponent.
SIGNIFICAND_BITS = 64
MAX_EXPONENT = 16383
# Redis's MAX_LONG_DOUBLE_CHARS: longer number strings are refused outright.
MAX_CHARS = 5 * 1024
# "%.17Lf": Redis prints 17 digits after the point, then trims zeros.
DECIMALS = 17

_INFINITIES = {b"inf", b"+inf", b"-inf", b"infinity", b"+infinity", b"-infinity"}


def round_extended(x: Fraction) -> Fraction | float:
    """The long double nearest to `x` (ties to even), or ±inf past the largest one."""
    if x == 0:
        return Fraction(0)
    a = abs(x)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    # Now 2**e <= a < 2**(e+1): scale so the significand has SIGNIFICAND_BITS bits.
    shift = SIGNIFICAND_BITS - 1 - e
    m = round(a * Fraction(2) ** shift)
    if m.bit_length() > SIGNIFICAND_BITS:  # rounding carried into a new bit
        m //= 2
        shift -= 1
    if SIGNIFICAND_BITS - 1 - shift > MAX_EXPONENT:
        return math.copysign(math.inf, x)
    result = m / Fraction(2) ** shift if shift >= 0 else Fraction(m * 2**-shift)
    return result if x > 0 else -result


def parse(text: bytes) -> Fraction | float | None:
    """strtold as Redis's string2ld accepts it; None if Redis would refuse the text."""
    if not text or len(text) >= MAX_CHARS or text != text.strip() or b"_" in text:
        return None
    if text.lower() in _INFINITIES:
        return -math.inf if text.startswith(b"-") else math.inf
    try:
        exact = Fraction(text.decode("ascii"))
    except (ValueError, UnicodeDecodeError, ZeroDivisionError):
        return None
    value = round_extended(exact)
    # strtold reports overflow as ERANGE, which string2ld refuses.
    return None if isinstance(value, float) else value


def add(a: Fraction | float, b: Fraction | float) -> Fraction | float:
    """a + b in long double; ±inf (or nan) when it overflows, as the FPU would."""
    if isinstance(a, float) or isinstance(b, float):
        return float(a) + float(b)
    return round_extended(a + b)


def format_human(x: Fraction) -> bytes:
    """ "%.17Lf" without trailing zeros (Redis's LD_STR_HUMAN); "-0" becomes "0"."""
    digits = round(abs(x) * 10**DECIMALS)
    whole, frac = divmod(digits, 10**DECIMALS)
    text = f"{whole}.{frac:0{DECIMALS}d}".rstrip("0").rstrip(".")
    if x < 0 and text != "0":
        text = "-" + text
    return text.encode()
