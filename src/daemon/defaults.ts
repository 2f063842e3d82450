// Default places of the daemon (shared by the daemon, xenopsctl and `xenopsd-ng dev`, without loading the daemon).
export const DEFAULT_SOCKET = '/run/xenopsd-ng/api.sock';
export const DEFAULT_STATE_DIR = '/run/xenopsd-ng/state';
export const DEFAULT_RUN_DIR = '/run/xenopsd-ng';
