// Request payload parsing with the C library semantics xenstored relies on: NUL-terminated strings
// counted the way get_strings/xs_count_strings count them, and atoi/strtol number parsing (leading
// blanks, signs, base prefixes, clamping), so malformed numbers map to the same values the C daemon sees.
// Strings are decoded as latin1: one char per byte, so tokens and paths round-trip byte for byte.

/** The NUL-terminated strings at the start of `payload`; bytes after the last NUL are not included. */
export function cStrings(payload: Buffer): string[] {
  const out: string[] = [];
  let start = 0;
  for (;;) {
    const nul = payload.indexOf(0, start);
    if (nul < 0) return out;
    out.push(payload.toString('latin1', start, nul));
    start = nul + 1;
  }
}

/** Number of NUL bytes (xs_count_strings). */
export function countNuls(payload: Buffer): number {
  let n = 0;
  let at = payload.indexOf(0);
  while (at >= 0) {
    n++;
    at = payload.indexOf(0, at + 1);
  }
  return n;
}

/** The single argument of a request whose payload is exactly `arg\0`, else undefined (onearg). */
export function oneArg(payload: Buffer): string | undefined {
  if (payload.length === 0) return undefined;
  const nul = payload.indexOf(0);
  if (nul !== payload.length - 1) return undefined;
  return payload.toString('latin1', 0, nul);
}

/** The first NUL-terminated string, or undefined when there is no NUL. */
export function firstString(payload: Buffer): string | undefined {
  const nul = payload.indexOf(0);
  return nul < 0 ? undefined : payload.toString('latin1', 0, nul);
}

const LONG_MAX = (1n << 63n) - 1n;
const LONG_MIN = -(1n << 63n);

function isSpace(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\v' || c === '\f' || c === '\r';
}

function digitValue(c: string): number {
  const code = c.charCodeAt(0);
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 97 && code <= 122) return code - 87;
  if (code >= 65 && code <= 90) return code - 55;
  return 99;
}

/** glibc strtol on a 64-bit long: value (clamped) and the index where parsing stopped (0 if nothing parsed). */
export function strtol(s: string, base: 0 | 10): { value: bigint; end: number } {
  let i = 0;
  while (i < s.length && isSpace(s[i]!)) i++;
  let negative = false;
  if (s[i] === '+' || s[i] === '-') {
    negative = s[i] === '-';
    i++;
  }
  let radix: number = base === 0 ? 10 : base;
  if (base === 0 && s[i] === '0') {
    if ((s[i + 1] === 'x' || s[i + 1] === 'X') && digitValue(s[i + 2] ?? '') < 16) {
      radix = 16;
      i += 2;
    } else radix = 8;
  }
  const digitsStart = i;
  let value = 0n;
  const big = BigInt(radix);
  while (i < s.length && digitValue(s[i]!) < radix) {
    value = value * big + BigInt(digitValue(s[i]!));
    i++;
  }
  if (i === digitsStart) return { value: 0n, end: 0 };
  if (negative) value = -value;
  if (value > LONG_MAX) value = LONG_MAX;
  if (value < LONG_MIN) value = LONG_MIN;
  return { value, end: i };
}

/** glibc atoi: (int)strtol(s, NULL, 10). */
export function atoi(s: string): number {
  return Number(BigInt.asIntN(32, strtol(s, 10).value));
}

/** atoi's result as the C code stores it in an unsigned int. */
export function atou(s: string): number {
  return atoi(s) >>> 0;
}
