import { createCipheriv, createDecipheriv } from 'node:crypto';

/**
 * The part of an XTS cipher the test cluster format needs. src/cipher's XtsCipher has it; so does
 * NodeXtsCipher below, which the rotation tests use by default so that they do not depend on the
 * addon build. Tweak: the number of the sector's first 512-byte unit (DESIGN.md, dm-crypt plain64).
 */
export interface SectorCipherLike {
  encryptSectors(key: Uint8Array, firstSector: number, sectorSize: number, data: Uint8Array): Uint8Array;
  decryptSectors(key: Uint8Array, firstSector: number, sectorSize: number, data: Uint8Array): Uint8Array;
}

function tweakOf(sector: number, sectorSize: number): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64LE(BigInt(sector) * BigInt(sectorSize / 512), 0);
  return iv;
}

export class NodeXtsCipher implements SectorCipherLike {
  encryptSectors(key: Uint8Array, firstSector: number, sectorSize: number, data: Uint8Array): Uint8Array {
    return this.run(true, key, firstSector, sectorSize, data);
  }

  decryptSectors(key: Uint8Array, firstSector: number, sectorSize: number, data: Uint8Array): Uint8Array {
    return this.run(false, key, firstSector, sectorSize, data);
  }

  private run(encrypt: boolean, key: Uint8Array, firstSector: number, sectorSize: number, data: Uint8Array): Uint8Array {
    if (key.length !== 64) throw new RangeError('XTS key is 64 bytes');
    if (data.length % sectorSize !== 0) throw new RangeError('whole sectors only');
    const out = new Uint8Array(data.length);
    for (let i = 0; i * sectorSize < data.length; i++) {
      const iv = tweakOf(firstSector + i, sectorSize);
      const c = encrypt ? createCipheriv('aes-256-xts', key, iv) : createDecipheriv('aes-256-xts', key, iv);
      const sector = data.subarray(i * sectorSize, (i + 1) * sectorSize);
      const a = c.update(sector);
      const b = c.final();
      out.set(a, i * sectorSize);
      out.set(b, i * sectorSize + a.length);
    }
    return out;
  }
}

/** 'node' (default): NodeXtsCipher. 'native' | 'ts': src/cipher's XtsCipher with that backend. */
export async function createTestCipher(backend: string | undefined): Promise<SectorCipherLike> {
  if (backend === undefined || backend === 'node') return new NodeXtsCipher();
  const { XtsCipher } = await import('../../../src/cipher/index.js');
  return XtsCipher.create({ backend: backend as 'native' | 'ts' }) as unknown as SectorCipherLike;
}

/** Whether src/cipher can run `backend` here (the addon may not be built). */
export async function cipherBackendAvailable(backend: string): Promise<boolean> {
  try {
    const cipher = await createTestCipher(backend);
    const key = new Uint8Array(64).map((_, i) => i + 1);
    cipher.encryptSectors(key, 0, 512, new Uint8Array(512));
    return true;
  } catch {
    return false;
  }
}
