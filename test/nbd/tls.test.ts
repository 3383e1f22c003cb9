/**
 * NBD over TLS (NBD_OPT_STARTTLS, proto.md "TLS support") with real clients: libnbd's nbdinfo and
 * nbdcopy, and qemu-io with a qemu x509 credentials object, on a throwaway PKI made with openssl.
 * TLS-only mode refuses everything in clear; mutual TLS refuses a client without a certificate;
 * the frames around STARTTLS that break the protocol close the connection.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { findTools } from '../helpers/external-tool.js';
import { useTempDirs } from '../helpers/temp-dir.js';
import { xorshiftBytes } from '../helpers/xorshift.js';
import { OPT, RawClient, REP } from './helpers/raw-client.js';
import { killAll, run, runOk } from './helpers/processes.js';
import { serveVolumes, type Served } from './helpers/served.js';
import { makeTestPki, type TestPki } from './helpers/tls-certs.js';
import { runBlockvault } from '../cli/helpers.js';
import { startCliServer, type CliServer } from './helpers/cli-server.js';

const check = findTools([
  { name: 'openssl', debianPackage: 'openssl' },
  { name: 'nbdinfo', debianPackage: 'libnbd-bin' },
  { name: 'nbdcopy', debianPackage: 'libnbd-bin' },
  { name: 'qemu-io', debianPackage: 'qemu-utils' },
]);
const tempDir = useTempDirs('blockvault-nbd-tls-');
const MiB = 1024 * 1024;
const SIZE = 8 * MiB;

let served: Served | null = null;
let cli: CliServer | null = null;
const clients: RawClient[] = [];
afterEach(async () => {
  killAll();
  cli?.kill();
  cli = null;
  for (const c of clients.splice(0)) c.close();
  await served?.stop();
  served = null;
});

async function serveTls(pki: TestPki, tls: { requestClientCert?: boolean; required?: boolean } = {}): Promise<Served> {
  served = await serveVolumes(tempDir(), [{ name: 'disk', sizeBytes: SIZE }], undefined, {
    serve: { tls: { key: pki.serverKey, cert: pki.serverCert, ca: pki.ca, ...tls } },
  });
  return served;
}

/** The export's URI for libnbd with a certificates directory. */
const withCerts = (uri: string, dir: string): string => `${uri}&tls-certificates=${dir}`;

describe.skipIf(!check.ok)(`NBD over TLS${check.ok ? '' : ` (skipped: ${check.reason})`}`, () => {
  it('nbdinfo negotiates TLS; nbdcopy writes and reads back through it; qemu-io with x509 credentials too', async () => {
    const pki = makeTestPki(join(tempDir(), 'pki'));
    const s = await serveTls(pki);
    expect(s.uri('disk')).toBe(`nbds+unix:///disk?socket=${s.socketPath}`);
    const info = await runOk('nbdinfo', [withCerts(s.uri('disk'), pki.clientDir)]);
    expect(info.stdout).toMatch(/protocol: newstyle-fixed with TLS/);
    expect(info.stdout).toMatch(/export-size: 8388608/);

    const image = xorshiftBytes(7, 4 * MiB);
    const file = join(tempDir(), 'in.img');
    writeFileSync(file, image);
    await runOk('nbdcopy', [file, withCerts(s.uri('disk'), pki.clientDir)]);
    const back = join(tempDir(), 'out.img');
    await runOk('nbdcopy', [withCerts(s.uri('disk'), pki.clientDir), back]);
    expect(readFileSync(back).subarray(0, image.length).equals(image)).toBe(true);

    const qemu = await runOk('qemu-io', [
      '--object', `tls-creds-x509,id=tls0,dir=${pki.clientDir},endpoint=client`,
      '--image-opts', `driver=nbd,server.type=unix,server.path=${s.socketPath},export=disk,tls-creds=tls0,tls-hostname=localhost`,
      '-c', 'write -P 0xab 5M 64k', '-c', 'read -P 0xab 5M 64k',
    ]);
    expect(qemu.stdout).toMatch(/wrote 65536\/65536 bytes/);
    expect(qemu.stdout).toMatch(/read 65536\/65536 bytes/);
    // What went through TLS is in the volume.
    const vol = await s.engine.openVolume('disk');
    expect(Buffer.from(await vol.read(5 * MiB, 64 * 1024)).every((b) => b === 0xab)).toBe(true);
    expect(Buffer.from(await vol.read(0, image.length)).equals(image)).toBe(true);
    await vol.close();
  });

  it('TLS-only mode: a client in clear gets NBD_REP_ERR_TLS_REQD for everything but STARTTLS and ABORT; EXPORT_NAME is cut', async () => {
    const pki = makeTestPki(join(tempDir(), 'pki'));
    const s = await serveTls(pki);
    const plain = await run('nbdinfo', [s.uri('disk').replace('nbds+unix', 'nbd+unix')]);
    expect(plain.code).not.toBe(0);
    const raw = await RawClient.connect(s.socketPath);
    clients.push(raw);
    await raw.handshake();
    for (const option of [OPT.LIST, OPT.STRUCTURED_REPLY, OPT.INFO, OPT.GO]) {
      raw.sendOption(option, option === OPT.GO || option === OPT.INFO ? Buffer.from([0, 0, 0, 4, ...Buffer.from('disk'), 0, 0]) : Buffer.alloc(0));
      const reply = await raw.optionReply();
      expect(reply.type, `option ${option}`).toBe(REP.ERR_TLS_REQD);
    }
    raw.sendOption(OPT.EXPORT_NAME, Buffer.from('disk'));
    expect(await raw.waitClosed()).toBe(true);
    expect(s.events.some((e) => e.kind === 'protocol' && /EXPORT_NAME before NBD_OPT_STARTTLS/.test(e.message))).toBe(true);
  });

  it('STARTTLS with data is refused; bytes sent after STARTTLS before its answer close the connection', async () => {
    const pki = makeTestPki(join(tempDir(), 'pki'));
    const s = await serveTls(pki);
    const raw = await RawClient.connect(s.socketPath);
    clients.push(raw);
    await raw.handshake();
    raw.sendOption(OPT.STARTTLS, Buffer.from('x'));
    expect((await raw.optionReply()).type).toBe(REP.ERR_INVALID);
    // A STARTTLS and, in the same write, a cleartext option: the server must not read it as TLS.
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(0x49484156454f5054n, 0);
    header.writeUInt32BE(OPT.STARTTLS, 8);
    const next = Buffer.from(header);
    next.writeUInt32BE(OPT.LIST, 8);
    raw.send(Buffer.concat([header, next]));
    expect(await raw.waitClosed()).toBe(true);
    expect(s.events.some((e) => e.kind === 'protocol' && /after NBD_OPT_STARTTLS/.test(e.message))).toBe(true);
  });

  it('mutual TLS: a client without a certificate the CA signed is refused; with one it connects', async () => {
    const pki = makeTestPki(join(tempDir(), 'pki'));
    const s = await serveTls(pki, { requestClientCert: true });
    expect((await runOk('nbdinfo', ['--size', withCerts(s.uri('disk'), pki.clientDir)])).stdout.trim()).toBe(String(SIZE));
    const anonymous = await run('nbdinfo', ['--size', withCerts(s.uri('disk'), pki.caOnlyDir)]);
    expect(anonymous.code).not.toBe(0);
    expect(s.events.some((e) => e.kind === 'protocol' && /TLS handshake failed/.test(e.message))).toBe(true);
  });

  it('required: false lets a client choose: in clear or in TLS', async () => {
    const pki = makeTestPki(join(tempDir(), 'pki'));
    const s = await serveTls(pki, { required: false });
    const clear = await runOk('nbdinfo', [s.uri('disk').replace('nbds+unix', 'nbd+unix')]);
    expect(clear.stdout).toMatch(/without TLS/);
    const secured = await runOk('nbdinfo', [withCerts(s.uri('disk'), pki.clientDir)]);
    expect(secured.stdout).toMatch(/with TLS/);
  });
});

describe.skipIf(!check.ok)('blockvault volume serve --tls-*', () => {
  it('serves nbds+unix with --tls-cert and --tls-key; half the options is a usage error', async () => {
    const pki = makeTestPki(join(tempDir(), 'pki'));
    const dir = join(tempDir(), 'engine');
    expect((await runBlockvault(['hsm', 'init', '--dir', dir])).code).toBe(0);
    expect((await runBlockvault(['volume', 'create', '--dir', dir, '--name', 'disk', '--size', '4MiB'])).code).toBe(0);
    const socketPath = join(dir, 'tls.sock');
    const cert = join(pki.clientDir, 'server-cert.pem');
    const key = join(pki.clientDir, 'server-key.pem');
    cli = await startCliServer(['disk', '--dir', dir, '--socket', socketPath, '--tls-cert', cert, '--tls-key', key]);
    expect(cli.firstLine).toBe(`nbds+unix:///disk?socket=${socketPath}`);
    expect((await runOk('nbdinfo', ['--size', withCerts(cli.firstLine, pki.clientDir)])).stdout.trim()).toBe(String(4 * MiB));
    expect(await cli.stop()).toBe(0);
    const half = await runBlockvault(['volume', 'serve', 'disk', '--dir', dir, '--socket', socketPath, '--tls-cert', cert]);
    expect(half.code).toBe(2);
    expect(half.stderr).toContain('give both --tls-cert and --tls-key');
    const missing = await runBlockvault(['volume', 'serve', 'disk', '--dir', dir, '--socket', socketPath, '--tls-cert', cert, '--tls-key', join(dir, 'nope.pem')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--tls-key');
  });
});

describe.skipIf(!check.ok)('serveNbd tls options', () => {
  it('refuse bad PEM, a missing CA for mutual TLS and wrong types with INVALID_ARGUMENT', async () => {
    const pki = makeTestPki(join(tempDir(), 'pki'));
    served = await serveVolumes(tempDir(), [{ name: 'disk', sizeBytes: SIZE }]);
    const engine = served.engine;
    const listen = { socketPath: join(tempDir(), 'x.sock') };
    const cases: Array<[unknown, RegExp]> = [
      [{ key: 'not a key', cert: pki.serverCert }, /not usable/],
      [{ key: pki.serverKey, cert: pki.ca }, /not usable/], // the key does not match the certificate
      [{ key: pki.serverKey }, /cert must be PEM/],
      [{ key: pki.serverKey, cert: pki.serverCert, requestClientCert: true }, /ca must be PEM/],
      [{ key: pki.serverKey, cert: pki.serverCert, required: 'yes' }, /required must be a boolean/],
      [null, /tls must be an object/],
    ];
    for (const [tls, message] of cases) {
      await expect(engine.serveNbd(listen, [{ volume: 'disk' }], { tls } as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(message) });
    }
  });
});
