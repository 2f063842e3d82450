// What the differential test's generator covers: its categories, how often each is drawn, and the
// categories left out because the sim and the C xenstored are known to differ there.

/** Every category the generator knows, with what it covers. */
export const CATEGORIES: Readonly<Record<string, string>> = {
  node: 'READ/WRITE/MKDIR/RM/DIRECTORY/GET_PERMS on valid absolute paths',
  relative: 'the same with relative paths (resolved against /local/domain/0)',
  perms: 'SET_PERMS then GET_PERMS naming other domids',
  'perms-nonexistent-domid': 'SET_PERMS naming domids the hypervisor does not have (>= DOMID_FIRST_RESERVED)',
  'perms-invalid': 'malformed permission strings and SET_PERMS without permissions',
  watch: 'WATCH/UNWATCH of nodes on several connections, duplicate and missing watches',
  'watch-special': 'watches on @introduceDomain / @releaseDomain and SET_PERMS on them',
  tx: 'transactions: start, reads and writes inside, commit or abort, conflicts with other connections',
  'tx-foreign': "using another connection's transaction id, an ended one, or one never allocated",
  domain: 'INTRODUCE, RELEASE, IS_DOMAIN_INTRODUCED, GET_DOMAIN_PATH, RESUME, SET_TARGET',
  'domain-invalid': 'the domain requests with missing or bad arguments',
  'invalid-path': "paths with bad characters, '//', a trailing '/', empty",
  'long-path': 'paths around the length limits',
  'big-value': 'values near the 4096-byte payload limit',
  'directory-part': 'DIRECTORY_PART with offsets',
  'directory-e2big': 'DIRECTORY of a node whose child list exceeds the payload limit',
  'reset-watches': 'RESET_WATCHES',
  control: 'CONTROL print, help, quota [domid], quota-soft, check, log, live-update -a, and unknown commands',
  'control-memory': 'CONTROL memreport',
  'long-event': 'watch events around the 4096-byte payload limit (path + token)',
  'watch-many': 'twenty watches on one connection over a subtree, then writes and a subtree RM that fire many of them',
  'tx-header': 'requests that are not node operations (TRANSACTION_START, INTRODUCE, WATCH, CONTROL ...) sent with an open transaction id',
  malformed: 'unknown message types, extra or missing arguments, a last argument without its NUL',
  oversize: 'a header claiming more than 4096 payload bytes (the server drops the connection)',
  pipelined: 'several requests written back to back before any reply',
};

/**
 * Known sim/C differences, each a category left out of the default generator until the sim
 * is fixed. `npm run diff:xenstored -- --all` runs them anyway. Keep the reason precise.
 */
export const KNOWN_DIFFERENCES: Readonly<Record<string, string>> = {
  'control-memory':
    'CONTROL "memreport\\0": the C xenstored answers ERROR EINVAL when it runs without a trace file (EBADF, ' +
    'untranslatable), OK with one (-T); the sim answers OK',
};

/** Relative frequency of each category in a sequence. */
export const WEIGHTS: Record<string, number> = {
  node: 30, relative: 6, perms: 8, 'perms-nonexistent-domid': 1, 'perms-invalid': 2, watch: 12, 'watch-special': 3,
  tx: 22, 'tx-foreign': 3, domain: 8, 'domain-invalid': 2, 'invalid-path': 3, 'long-path': 1, 'big-value': 1,
  'directory-part': 2, 'directory-e2big': 0.3, 'reset-watches': 1, control: 1, malformed: 2, oversize: 0.3, pipelined: 3,
  'control-memory': 0.5, 'long-event': 0.5, 'tx-header': 2, 'watch-many': 1,
};
