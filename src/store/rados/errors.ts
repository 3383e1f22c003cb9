/**
 * librados return codes as BlockvaultErrors. librados returns negated errnos with Linux
 * numbering (it runs only on Linux here), so os.constants.errno names them.
 *
 * Which rcs are not errors at all (ENOENT of a read, EEXIST of an exclusive create, a cmpext
 * mismatch) is decided by the operation (pool.ts); everything that reaches here failed.
 */
import { constants } from 'node:os';
import { BlockvaultError, type ErrorCode } from '../../errors.js';

const NAMES = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) if (!NAMES.has(value)) NAMES.set(value, name);

/** `ETIMEDOUT` for -110; `errno 4200` for a number Linux does not name. */
export function errnoName(rc: number): string {
  return NAMES.get(-rc) ?? `errno ${-rc}`;
}

export const ERRNO = {
  ENOENT: constants.errno.ENOENT,
  E2BIG: constants.errno.E2BIG,
  EEXIST: constants.errno.EEXIST,
  EBUSY: constants.errno.EBUSY,
  ENOTCONN: constants.errno.ENOTCONN,
  ETIMEDOUT: constants.errno.ETIMEDOUT,
  ENOSPC: constants.errno.ENOSPC,
  EDQUOT: constants.errno.EDQUOT,
  EACCES: constants.errno.EACCES,
  EPERM: constants.errno.EPERM,
} as const;

export interface OpContext {
  /** `read`, `writeFull`, ... */
  op: string;
  pool: string;
  oid: string;
  timeoutMs: number;
}

/** The error for a failed object operation: it names the operation, pool, object and errno. */
export function opError(rc: number, ctx: OpContext): BlockvaultError {
  const errno = errnoName(rc);
  const what = `RADOS ${ctx.op} of object ${JSON.stringify(ctx.oid)} in pool ${JSON.stringify(ctx.pool)}`;
  const details = { pool: ctx.pool, oid: ctx.oid, op: ctx.op, errno, rc };
  let code: ErrorCode = 'STORE_IO';
  let message = `${what} failed with ${errno} (${rc})`;
  if (-rc === ERRNO.ETIMEDOUT) {
    code = 'STORE_TIMEOUT';
    message = `${what} got no answer within ${ctx.timeoutMs} ms (${errno}): the OSDs holding it are down, or fewer than the pool's min_size are up; a write may or may not have been applied`;
  } else if (-rc === ERRNO.ENOSPC || -rc === ERRNO.EDQUOT) {
    message = `${what} failed with ${errno} (${rc}): the pool or cluster is full or over quota`;
  } else if (-rc === ERRNO.EACCES || -rc === ERRNO.EPERM) {
    message = `${what} failed with ${errno} (${rc}): the Ceph user lacks the OSD capabilities for this pool`;
  }
  return new BlockvaultError(code, message, details);
}
