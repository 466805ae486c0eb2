/**
 * Model allow-lists (glob patterns) and IP allow-lists (IPv4/IPv6 CIDR). Validation happens when
 * a list is saved, so a request never meets a pattern that cannot be compiled.
 */
import ipaddr from 'ipaddr.js';
import picomatch from 'picomatch';

// `bash: true` lets `*` cross `/`, so `*` also allows `meta-llama/Llama-3-8B`.
const GLOB_OPTIONS = { bash: true, dot: true, strictBrackets: true } as const;
/**
 * A leading `!` negates a glob: ORed with the others, one entry meant to narrow the list would open
 * it to every other model. Such patterns are refused when saved, and allow nothing if stored.
 */
const negated = (pattern: string) => pattern.startsWith('!');
const MODEL_PATTERN_CHARS = /^[A-Za-z0-9._:/@+*?[\]{},!-]+$/;

export class InvalidAllowListError extends Error {}

export function normalizeModelPatterns(patterns: readonly string[]): string[] {
  const out: string[] = [];
  for (const raw of patterns) {
    const pattern = raw.trim();
    if (pattern.length === 0 || pattern.length > 200 || !MODEL_PATTERN_CHARS.test(pattern)) {
      throw new InvalidAllowListError(
        `invalid model pattern ${JSON.stringify(raw)}: use model names or globs such as "gpt-4o*" (letters, digits, . _ : / @ + - and * ? [ ] { } ,)`,
      );
    }
    if (negated(pattern)) {
      throw new InvalidAllowListError(
        `invalid model pattern ${JSON.stringify(raw)}: an allow-list cannot exclude models; list the models the key may use`,
      );
    }
    try {
      picomatch.makeRe(pattern, GLOB_OPTIONS);
    } catch (error) {
      throw new InvalidAllowListError(
        `invalid model pattern ${JSON.stringify(raw)}: ${(error as Error).message}`,
      );
    }
    if (!out.includes(pattern)) out.push(pattern);
  }
  return out;
}

export type ModelMatcher = (model: string) => boolean;

/** An empty list allows every model. */
export function compileModelAllowList(patterns: readonly string[]): ModelMatcher {
  if (patterns.length === 0) return () => true;
  const allowing = patterns.filter((pattern) => !negated(pattern));
  if (allowing.length === 0) return () => false;
  const matcher = picomatch(allowing, GLOB_OPTIONS);
  return (model) => matcher(model);
}

/** Canonical CIDR strings; a bare address becomes a /32 or /128. */
export function normalizeCidrs(cidrs: readonly string[]): string[] {
  const out: string[] = [];
  for (const raw of cidrs) {
    const text = raw.trim();
    let canonical: string;
    try {
      if (text.includes('/')) {
        const [address, bits] = ipaddr.parseCIDR(text);
        // Store the network address, so 10.1.2.3/8 is kept as 10.0.0.0/8.
        const network =
          address.kind() === 'ipv4'
            ? ipaddr.IPv4.networkAddressFromCIDR(text)
            : ipaddr.IPv6.networkAddressFromCIDR(text);
        canonical = `${network.toString()}/${bits}`;
      } else {
        const address = ipaddr.parse(text);
        canonical = `${address.toString()}/${address.kind() === 'ipv4' ? 32 : 128}`;
      }
    } catch {
      throw new InvalidAllowListError(
        `invalid IP range ${JSON.stringify(raw)}: use an IPv4 or IPv6 address or CIDR such as "203.0.113.0/24" or "2001:db8::/32"`,
      );
    }
    if (!out.includes(canonical)) out.push(canonical);
  }
  return out;
}

export type IpMatcher = (ip: string) => boolean;

/**
 * An empty list allows every address. IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is matched as IPv4.
 * Answers are memoized per address (bounded): parsing an address costs far more than the lookup,
 * and a key is used from few addresses.
 */
export function compileIpAllowList(cidrs: readonly string[], memoSize = 1024): IpMatcher {
  if (cidrs.length === 0) return () => true;
  const ranges = cidrs.map((cidr) => ipaddr.parseCIDR(cidr));
  const memo = new Map<string, boolean>();
  return (ip) => {
    const known = memo.get(ip);
    if (known !== undefined) return known;
    let allowed: boolean;
    try {
      const address = ipaddr.process(ip);
      allowed = ranges.some(([range, bits]) => address.kind() === range.kind() && address.match(range, bits));
    } catch {
      allowed = false;
    }
    if (memo.size >= memoSize) memo.clear();
    memo.set(ip, allowed);
    return allowed;
  };
}
