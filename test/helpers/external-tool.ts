/**
 * Real clients and modules from Debian (qemu-io, nbdinfo, fio, softhsm2, ...) for the tests that
 * use them. Outside CI a missing tool skips its cases with the reason; `.ci/run` sets
 * BLOCKVAULT_REQUIRE_TOOLS=1 so that in CI a missing tool fails the suite instead of skipping.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface ToolCheck {
  /** True when every named tool was found. */
  readonly ok: boolean;
  /** Why the cases skip, naming each missing tool and the Debian package that has it. */
  readonly reason: string;
}

/** Each entry: a program name on PATH or an absolute file path, and its Debian package. */
export function findTools(tools: ReadonlyArray<{ name: string; debianPackage: string }>): ToolCheck {
  const missing = tools.filter(({ name }) =>
    name.startsWith('/') ? !existsSync(name) : spawnSync('sh', ['-c', `command -v ${name}`]).status !== 0,
  );
  if (missing.length === 0) return { ok: true, reason: '' };
  const reason = `missing ${missing.map((t) => `${t.name} (apt-get install ${t.debianPackage})`).join(', ')}`;
  if (process.env['BLOCKVAULT_REQUIRE_TOOLS'] === '1') {
    throw new Error(`BLOCKVAULT_REQUIRE_TOOLS=1 and ${reason}: .ci/apt.d must list the package`);
  }
  return { ok: false, reason };
}
