// dom0's console daemon in the sim host (xenconsoled): console/tty for a domain with a good console record, a socket
// streaming what the guest prints, the guest log, the buffer through `sim console`, no console (and no crash) for a
// bad record, and the socket gone once the domain is. Only the sim host's sockets and DIR are used.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { SimHostHandle } from '../support/simhost.js';
import { closeHostClients, openHostClients } from './host-clients.js';
import { SimControlClient, SimControlError } from '../../src/sim/control/client.js';
import type { XsClient } from '../../src/xenstore/client.js';
import { main as simMain } from '../../src/sim/cli.js';
import type { HvClient } from './hvclient.js';
import { OutputBuffer } from '../../src/sim/console/output-buffer.js';
import { logNameFor, readConsoleRecord } from '../../src/sim/console/records.js';
import { XsError, type XsOps } from '../../src/xenstore/types.js';
import { createDomain, until, waitFor, type TestDomain } from './toolstack.js';

let host: SimHostHandle;
let xs: XsClient;
let hv: HvClient;
let ctl: SimControlClient;

before(async () => ({ host, xs, hv, ctl } = await openHostClients({ bootDelayMs: 30 })));
after(() => closeHostClients({ host, xs, hv, ctl }));

interface ConsoleDomain extends TestDomain {
  consoleMfn: number;
  consolePort: number;
}

/** A PV domain, introduced and paused, with what the build gave for its console (libxl writes these as ring-ref and port). */
async function domainWithConsoleFrames(name: string): Promise<ConsoleDomain> {
  let consoleMfn = 0;
  let consolePort = 0;
  // createDomain's restore hook lets the test see the build's result: it builds, as a plain create would.
  const dom = await createDomain(hv, xs, {
    name,
    restore: async (domid, storePort, port) => {
      consolePort = port;
      const built = await hv.call<{ storeMfn: number; consoleMfn: number }>('build', domid, { type: 'pv', kernel: '/boot/vmlinuz-sim', memoryMib: 64, storePort, consolePort: port });
      consoleMfn = Number(built.consoleMfn);
      return built;
    },
  });
  return { ...dom, consoleMfn, consolePort };
}

/** Writes the three keys in one transaction, as the daemon does: the console daemon never sees half a record. */
async function writeConsoleRecord(dom: TestDomain, rec: { type: string; ringRef: string; port: string }): Promise<void> {
  await xs.transaction(async (tx) => {
    await tx.write(`${dom.dompath}/console/type`, rec.type);
    await tx.write(`${dom.dompath}/console/ring-ref`, rec.ringRef);
    await tx.write(`${dom.dompath}/console/port`, rec.port);
  });
}

/** A client of the console socket, collecting what it streams. */
function consoleClient(path: string): Promise<{ text: () => string; closed: Promise<void>; sock: net.Socket }> {
  return new Promise((resolve, reject) => {
    let text = '';
    const sock = net.createConnection(path);
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.on('data', (c: Buffer) => (text += c.toString()));
    sock.once('error', reject);
    sock.once('connect', () => resolve({ text: () => text, closed, sock }));
  });
}

async function simCli(...args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const status = await simMain(args, { out: (t) => (stdout += t), err: (t) => (stderr += t) });
  return { status, stdout, stderr };
}

/** The reasons of the host's 'bad console record' warnings about domid (its logs are pino JSON lines). */
function refusals(domid: number): string[] {
  const out: string[] = [];
  for (const line of host.logs().split('\n')) {
    if (!line.includes('bad console record')) continue;
    const rec = JSON.parse(line) as { domid?: number; reason?: string; level?: number };
    if (rec.domid === domid && rec.level === 40 && rec.reason) out.push(rec.reason);
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a good console record: console/tty names a socket that streams the guest; the log and `sim console` hold it; destroy removes the socket', async () => {
  const dom = await domainWithConsoleFrames('web/01 ok');
  await writeConsoleRecord(dom, { type: 'xenconsoled', ringRef: String(dom.consoleMfn), port: String(dom.consolePort) });
  const tty = await waitFor(xs, `${dom.dompath}/console/tty`, (v) => v !== undefined);
  const sockPath = join(host.dir, 'console', `${dom.domid}.sock`);
  assert.equal(tty, sockPath);
  // Written by dom0 under console/, so it inherits (n0,rDOMID) as in xl's tree.
  assert.deepEqual(await xs.getPerms(`${dom.dompath}/console/tty`), [{ id: 0, perm: 'n' }, { id: dom.domid, perm: 'r' }]);

  const client = await consoleClient(tty!);
  const other = await consoleClient(tty!);
  other.sock.write('input nobody reads\n'); // accepted and dropped
  await hv.call('unpause', dom.domid);
  await until(async () => (client.text().includes('GUEST: up') ? true : undefined), 'GUEST: up on the console socket');
  const streamed = client.text();
  assert.ok(streamed.indexOf('Linux version') >= 0 && streamed.indexOf('Linux version') < streamed.indexOf('GUEST: up'), streamed);
  await until(async () => (other.text().includes('GUEST: up') ? true : undefined), 'GUEST: up on the second client');
  assert.doesNotMatch(other.text(), /input nobody reads/, 'what a client writes is dropped, not echoed');

  // The log file: name sanitised (no '/' reaches the path), in DIR/console.
  const logFile = join(host.dir, 'console', 'guest-web_01_ok.log');
  await until(async () => (existsSync(logFile) && readFileSync(logFile, 'utf8').includes('GUEST: up') ? true : undefined), 'GUEST: up in the log');

  // The buffer, through the control RPC and the CLI.
  const snap = await ctl.call('console.read', { domid: dom.domid });
  assert.equal(snap.tty, sockPath);
  assert.equal(snap.logFile, logFile);
  assert.match(snap.output, /Booting paravirtualized kernel on Xen\n[^]*GUEST: up\n/);
  const cli = await simCli('console', String(dom.domid), '--dir', host.dir);
  assert.equal(cli.status, 0, cli.stderr);
  assert.match(cli.stdout, /^Linux version .*\n[^]*GUEST: up\n$/);

  // Shutdown: the guest says why, on the socket and in the log.
  await xs.write(`${dom.dompath}/control/shutdown`, 'poweroff');
  await until(async () => (client.text().includes('GUEST: shutdown (poweroff') ? true : undefined), 'the shutdown line');

  // Destroy: the daemon lets go (socket removed, clients disconnected), the log stays.
  await hv.call('destroy', dom.domid);
  await until(async () => (existsSync(sockPath) ? undefined : true), 'the console socket to be removed');
  await Promise.race([client.closed, sleep(2000).then(() => assert.fail('the console client was not disconnected'))]);
  assert.match(readFileSync(logFile, 'utf8'), /GUEST: up\n[^]*GUEST: shutdown \(poweroff/);
  await assert.rejects(ctl.call('console.read', { domid: dom.domid }), (e: unknown) => e instanceof SimControlError && e.code === 'ESRCH');
  other.sock.destroy();
});

test('a bad console record gets no console/tty and a warning; the host carries on and takes a corrected record', async () => {
  const dom = await domainWithConsoleFrames('bad-console');
  const good = { type: 'xenconsoled', ringRef: String(dom.consoleMfn), port: String(dom.consolePort) };
  const bad: Array<[{ type: string; ringRef: string; port: string }, RegExp]> = [
    [{ ...good, ringRef: 'garbage\u0000\u00ff' }, /ring-ref .* is not a frame number/],
    [{ ...good, ringRef: '99999999999999999999' }, /not the domain's console frame/],
    [{ ...good, ringRef: String(dom.consoleMfn - 1) }, /not the domain's console frame/],
    [{ ...good, port: '-1' }, /console\/port "-1" is not an event channel port/],
    [{ ...good, port: '999999' }, /console\/port 999999 is no event channel the domain offers dom0/],
    [{ ...good, type: 'constructor' }, /console\/type "constructor" is neither xenconsoled nor ioemu/],
  ];
  for (const [rec, warning] of bad) {
    await writeConsoleRecord(dom, rec);
    await until(async () => (refusals(dom.domid).some((r) => warning.test(r)) ? true : undefined), `a warning matching ${warning}`);
  }
  // The guest boots with its console unconnected; its output waits for it.
  await hv.call('unpause', dom.domid);
  await waitFor(xs, `${dom.dompath}/data/updated`, (v) => v === '1');
  await sleep(100);
  assert.equal(await xs.tryRead(`${dom.dompath}/console/tty`), undefined);
  assert.equal(existsSync(join(host.dir, 'console', `${dom.domid}.sock`)), false);
  const waiting = await ctl.call('console.read', { domid: dom.domid });
  assert.equal(waiting.tty, undefined);
  assert.match(waiting.output, /GUEST: up/);
  assert.equal((await ctl.call('ping')).pong, true);

  // Corrected: the console is connected, and what the guest printed meanwhile is in its log.
  await writeConsoleRecord(dom, good);
  const tty = await waitFor(xs, `${dom.dompath}/console/tty`, (v) => v !== undefined);
  assert.equal(tty, join(host.dir, 'console', `${dom.domid}.sock`));
  const logFile = join(host.dir, 'console', 'guest-bad-console.log');
  await until(async () => (existsSync(logFile) && readFileSync(logFile, 'utf8').includes('GUEST: up') ? true : undefined), 'the early output in the log');
  await hv.call('destroy', dom.domid);
  await until(async () => (existsSync(tty!) ? undefined : true), 'the console socket to be removed');
});

test('console.read and `sim console` refuse bad and unknown domids', async () => {
  for (const params of [{}, { domid: 'x' }, { domid: 0 }, { domid: 1.5 }, { domid: 0x8000 }]) {
    await assert.rejects(ctl.call('console.read', params as { domid: number }), (e: unknown) => e instanceof SimControlError && e.code === 'EINVAL', JSON.stringify(params));
  }
  await assert.rejects(ctl.call('console.read', { domid: 4000 }), (e: unknown) => e instanceof SimControlError && e.code === 'ESRCH' && /no domain 4000/.test(e.message));
  const r = await simCli('console', '--dir', host.dir);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /expected a domid/);
  const none = await simCli('console', '4000', '--dir', host.dir);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /no domain 4000/);
  // Sockets of released domains are all gone; logs stay.
  assert.deepEqual(readdirSync(join(host.dir, 'console')).filter((f) => f.endsWith('.sock')), []);
});


test('the console buffer keeps the newest bytes up to its cap and counts what it dropped', () => {
  const buf = new OutputBuffer(10);
  buf.append(Buffer.from('abcd'));
  buf.append(Buffer.from('efgh'));
  assert.equal(buf.contents().toString(), 'abcdefgh');
  buf.append(Buffer.from('ijkl'));
  assert.equal(buf.contents().toString(), 'cdefghijkl');
  assert.equal(buf.dropped, 2);
  buf.append(Buffer.from('0123456789XYZ'));
  assert.equal(buf.contents().toString(), '3456789XYZ');
  assert.equal(buf.length, 10);
  assert.equal(buf.dropped, 15);
});

test('log names are file-name safe; console records are checked against the domain', async () => {
  assert.equal(logNameFor(3, 'web-01.prod'), 'web-01.prod');
  assert.equal(logNameFor(3, '../../etc/passwd'), '.._.._etc_passwd');
  assert.equal(logNameFor(3, '..'), 'dom3');
  assert.equal(logNameFor(3, ''), 'dom3');
  assert.equal(logNameFor(3, undefined), 'dom3');
  assert.equal(logNameFor(3, 'x'.repeat(300)).length, 64);

  const store = new Map<string, string>();
  const fake = {
    read: async (path: string) => {
      const v = store.get(path);
      if (v === undefined) throw new XsError('ENOENT', 'read', path);
      return v;
    },
  } as unknown as XsOps;
  const frames = { consoleMfn: 1234, evtchns: [{ port: 1, remoteDomid: 0 }, { port: 2, remoteDomid: 0 }, { port: 3, remoteDomid: 5 }] };
  const put = (type: string | undefined, ring: string | undefined, port: string | undefined) => {
    store.clear();
    for (const [k, v] of [['type', type], ['ring-ref', ring], ['port', port]] as const) if (v !== undefined) store.set(`/local/domain/7/console/${k}`, v);
  };
  const kind = async (fr: typeof frames | undefined = frames) => {
    const r = await readConsoleRecord(fake, 7, fr);
    return r.kind === 'invalid' ? `invalid: ${r.reason}` : r.kind;
  };
  put('xenconsoled', '1234', '2');
  assert.equal(await kind(), 'valid');
  put('xenconsoled', '1234', undefined);
  assert.equal(await kind(), 'incomplete');
  put('ioemu', '1234', '2');
  assert.equal(await kind(), 'not-ours');
  put('xenconsoled', '1234', '3');
  assert.match(await kind(), /port 3 is no event channel the domain offers dom0/);
  put('xenconsoled', '1234', '0');
  assert.match(await kind(), /port "0" is not an event channel port/);
  put('xenconsoled', ' 1234', '2');
  assert.match(await kind(), /not a frame number/);
  put('xenconsoled', '1234', '2');
  const gone = await readConsoleRecord(fake, 7, undefined);
  assert.equal(gone.kind === 'invalid' && gone.reason, 'the hypervisor has no such domain');
});
