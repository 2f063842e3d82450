// Test helpers: a temp socket path, a minimal HTTP-over-unix-socket client, a quiet logger.
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack, unpack } from 'msgpackr';
import pino from 'pino';

export const quietLogger = () => pino({ level: 'silent' });

export function tempSocketDir(): { dir: string; socketPath: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'xenopsd-ng-rpc-'));
  return { dir, socketPath: join(dir, 'run', 'api.sock'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  raw: Buffer;
  body: any;
}

export interface ClientOptions {
  method?: string;
  path?: string;
  contentType?: string;
  agent?: Agent;
  headers?: Record<string, string | number>;
}

/** One HTTP exchange on the unix socket; `body` is sent as given (string/Buffer) and the answer decoded. */
export function http(socketPath: string, body: string | Buffer | undefined, options: ClientOptions = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath,
        method: options.method ?? 'POST',
        path: options.path ?? '/v1',
        agent: options.agent ?? false,
        headers: { 'Content-Type': options.contentType ?? 'application/json', ...(options.headers ?? {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const raw = Buffer.concat(chunks);
          const type = String(res.headers['content-type'] ?? '');
          let decoded: unknown;
          if (raw.length > 0) decoded = type.startsWith('application/msgpack') ? unpack(raw) : JSON.parse(raw.toString('utf8'));
          resolve({ status: res.statusCode ?? 0, headers: res.headers, raw, body: decoded });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A JSON-RPC call; returns the whole response object. */
export async function rpc(socketPath: string, method: string, params?: unknown, id: number | string = 1): Promise<any> {
  const msg: Record<string, unknown> = { jsonrpc: '2.0', id, method };
  if (params !== undefined) msg.params = params;
  const answer = await http(socketPath, JSON.stringify(msg));
  return answer.body;
}

/** A JSON-RPC call in msgpack. */
export async function rpcMsgpack(socketPath: string, message: unknown): Promise<HttpAnswer> {
  return http(socketPath, pack(message), { contentType: 'application/msgpack' });
}

export const SAMPLE_UUID = '0b5f0f4e-3c7a-4e6e-9a55-7d1f6b1a2c3d';

export function sampleVmSpec(): Record<string, any> {
  return {
    id: SAMPLE_UUID,
    name: 'vm1',
    type: 'pv',
    memory: { max_mib: 256, target_mib: 128 },
    vcpus: { max: 2, online: 1 },
    boot: { kernel: '/boot/vmlinuz', ramdisk: '/boot/initrd', cmdline: 'console=hvc0' },
    vbds: [{ device: 'xvda', path: '/var/lib/images/vm1.img', mode: 'rw', type: 'disk' }],
    vifs: [{ index: 0, mac: '00:16:3e:00:00:01', bridge: 'xenbr0', mtu: 1500 }],
    on_poweroff: 'destroy',
    on_reboot: 'restart',
    on_crash: 'preserve',
    xenstore_data: { 'vm-data/hostname': 'vm1' },
  };
}
