// netback plus the vif hotplug scripts: vif-bridge needs a bridge named; the frontend must offer rx-copy.
import { HotplugError, type BackendKind, type KeyReader } from './kind.js';
import { XS_STATE, parseU32 } from './xenbus.js';

const MAX_QUEUES = 2;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

export const vifKind: BackendKind = {
  type: 'vif',

  async probeKeys() {
    return {
      'feature-sg': '1',
      'feature-gso-tcpv4': '1',
      'feature-gso-tcpv6': '1',
      'feature-ipv6-csum-offload': '1',
      'feature-rx-copy': '1',
      'feature-xdp-headroom': '1',
      'feature-rx-flip': '0',
      'feature-multicast-control': '1',
      'feature-dynamic-multicast-control': '1',
      'feature-split-event-channels': '1',
      'multi-queue-max-queues': String(MAX_QUEUES),
      'feature-ctrl-ring': '1',
    };
  },

  async hotplug(be: KeyReader) {
    // vif-route and vif-nat need no bridge; vif-bridge (the default script) does.
    const script = (await be('script')) ?? '';
    const routed = /\/vif-(route|nat)$/.test(script);
    const bridge = (await be('bridge')) ?? '';
    if (!routed && bridge.trim() === '') throw new HotplugError('no bridge named in the backend (bridge key empty or missing)');
    const mac = await be('mac');
    if (mac !== undefined && !MAC.test(mac)) throw new HotplugError(`bad mac address ${JSON.stringify(mac)}`);
    return { 'hotplug-status': 'connected' };
  },

  connectOn: [XS_STATE.Connected],

  async connect(_be: KeyReader, fe: KeyReader) {
    const rxCopy = await fe('request-rx-copy');
    if (rxCopy !== '1') return `frontend does not request rx-copy (request-rx-copy=${JSON.stringify(rxCopy)})`;
    const queuesRaw = await fe('multi-queue-num-queues');
    const queues = queuesRaw === undefined ? 1 : parseU32(queuesRaw);
    if (queues === undefined || queues < 1 || queues > MAX_QUEUES) return `bad multi-queue-num-queues ${JSON.stringify(queuesRaw)}`;
    const prefixes = queues === 1 ? [''] : Array.from({ length: queues }, (_, i) => `queue-${i}/`);
    for (const p of prefixes) {
      for (const key of ['tx-ring-ref', 'rx-ring-ref']) {
        if (parseU32(await fe(p + key)) === undefined) return `missing or bad ${p}${key}`;
      }
      const single = parseU32(await fe(`${p}event-channel`));
      const split = parseU32(await fe(`${p}event-channel-tx`)) !== undefined && parseU32(await fe(`${p}event-channel-rx`)) !== undefined;
      if (single === undefined && !split) return `missing or bad ${p}event-channel(-tx/-rx)`;
    }
    return {};
  },
};
