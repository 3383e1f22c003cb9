/**
 * A throwaway PKI for the NBD TLS tests, made with the openssl CLI: a CA, a server certificate
 * for 127.0.0.1 and localhost, and a client certificate, laid out as libnbd and qemu read a
 * certificates directory (ca-cert.pem, client-cert.pem, client-key.pem), plus a directory with the
 * CA alone (a client that has no certificate of its own).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestPki {
  /** ca-cert.pem, client-cert.pem, client-key.pem. */
  clientDir: string;
  /** ca-cert.pem only. */
  caOnlyDir: string;
  ca: string;
  serverKey: string;
  serverCert: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Makes the PKI under `dir` (a few hundred ms: EC P-256 keys). */
export function makeTestPki(dir: string): TestPki {
  mkdirSync(dir, { recursive: true });
  const days = ['-days', '2'];
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca-cert.pem', '-subj', '/CN=blockvault test CA', ...days], dir);
  const issue = (name: string, subject: string, extensions: string): void => {
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', subject], dir);
    writeFileSync(join(dir, `${name}.ext`), extensions);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca-cert.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', `${name}-cert.pem`, '-extfile', `${name}.ext`, ...days], dir);
  };
  issue('server', '/CN=localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n');
  issue('client', '/CN=blockvault test client', 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n');
  const caOnlyDir = join(dir, 'ca-only');
  mkdirSync(caOnlyDir);
  const ca = readFileSync(join(dir, 'ca-cert.pem'), 'utf8');
  writeFileSync(join(caOnlyDir, 'ca-cert.pem'), ca);
  return {
    clientDir: dir,
    caOnlyDir,
    ca,
    serverKey: readFileSync(join(dir, 'server-key.pem'), 'utf8'),
    serverCert: readFileSync(join(dir, 'server-cert.pem'), 'utf8'),
  };
}
