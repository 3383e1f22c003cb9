export { AuditLog, AUDIT_DB_NAME, hashAuditRecord, type AuditLogOptions } from './audit-log.js';
export { canonicalJson, type JsonValue } from './canonical-json.js';
export type { AuditEvent, AuditListFilter, AuditOutcome, AuditRecord, AuditVerifyResult } from './types.js';
