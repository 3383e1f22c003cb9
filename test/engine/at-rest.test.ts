/**
 * At rest (issue 4): write recognizable plaintext, close the engine, scan every file under its
 * directory: no plaintext sector, nor any 32-byte piece of one, is found. Imported root-key
 * material is not found either. On the PKCS#11 provider the SoftHSM2 token directory is scanned
 * too: the imported material went into the token with C_CreateObject and must not lie there in
 * the clear (SoftHSM encrypts private objects under a key derived from the user PIN).
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { cipherBackends } from '../helpers/cipher-backends.js';
import { forEachProvider } from '../helpers/providers.js';
import { softHsmToken } from '../helpers/softhsm.js';
import { openTestEngine, rootKey } from '../helpers/engine.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

afterAll(() => removeTempDirs());

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

/** Sector `index` of a volume: a line of text repeated, unique per volume and sector. */
function textSector(tag: string, index: number, sectorSize: number): Buffer {
  const line = `blockvault plaintext ${tag} sector ${String(index).padStart(6, '0')} | `;
  return Buffer.from(line.repeat(Math.ceil(sectorSize / line.length)).slice(0, sectorSize));
}

// Every cipher backend with every key provider (test/helpers/providers.ts).
for (const { backend, skipReason } of cipherBackends()) {
  forEachProvider(`data at rest [${backend}]`, (provider) => {
    it('holds no plaintext sector and no root-key material in any file', async () => {
      const dir = makeTempDir('bv-rest-');
      const material = randomBytes(32);
      const engine = await openTestEngine(dir, { provider, cipher: backend });
      const needles: Buffer[] = [material];
      try {
        const key = await rootKey(engine, { material });
        const layouts = [
          { sectorSize: 4096 as const, tag: 'split4k' },
          { sectorSize: 512 as const, tag: 'compact512' },
        ];
        for (const { sectorSize, tag } of layouts) {
          const sectors = 64;
          const vol = await engine.createVolume({ name: tag, sizeBytes: sectors * sectorSize, sectorSize, diskEncryptionKeyCrn: key.crn });
          const all = Buffer.concat(Array.from({ length: sectors }, (_, i) => textSector(tag, i, sectorSize)));
          await vol.write(0, all.subarray(0, all.length / 2)); // whole sectors
          await vol.write(all.length / 2 + 7, all.subarray(all.length / 2 + 7)); // unaligned
          await vol.write(all.length / 2, all.subarray(all.length / 2, all.length / 2 + 7));
          await vol.flush();
          expect(Buffer.from(await vol.read(0, all.length)).equals(all)).toBe(true);
          for (let i = 0; i < sectors; i++) needles.push(textSector(tag, i, sectorSize).subarray(0, 32));
        }
        // A compact 4096-byte volume too (a different engine option).
      } finally {
        await engine.close();
      }
      const compact = await openTestEngine(dir, { provider, cipher: backend, volumeLayout: 'compact' });
      try {
        const vol = await compact.createVolume({ name: 'compact4k', sizeBytes: 64 * 4096 });
        expect(vol.info().layout).toBe('compact');
        const all = Buffer.concat(Array.from({ length: 64 }, (_, i) => textSector('compact4k', i, 4096)));
        await vol.write(0, all);
        for (let i = 0; i < 64; i++) needles.push(textSector('compact4k', i, 4096).subarray(0, 32));
      } finally {
        await compact.close();
      }

      const tokenFiles = provider === 'pkcs11' ? filesUnder(softHsmToken().tokenDir) : [];
      if (provider === 'pkcs11') expect(tokenFiles.length).toBeGreaterThan(0);
      const files = [...filesUnder(dir), ...tokenFiles];
      expect(files.length).toBeGreaterThan(0);
      let scannedBytes = 0;
      for (const file of files) {
        const bytes = readFileSync(file);
        scannedBytes += bytes.length;
        expect(bytes.includes('blockvault plaintext'), `plaintext in ${file}`).toBe(false);
        for (const needle of needles) expect(bytes.includes(needle), `secret bytes in ${file}`).toBe(false);
      }
      expect(scannedBytes).toBeGreaterThan(3 * 64 * 512);
    });
  }, skipReason);
}
