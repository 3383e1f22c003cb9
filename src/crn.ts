import { BlockvaultError } from './errors.js';

/**
 * Cloud resource names, `crn:v1:<cloud>:<scope>:<service>:<region>:a/<account>:<instance>:<type>:<id>`
 * (DESIGN.md, "Key hierarchy"). Programmatic callers must pass the full CRN of a root key;
 * a bare id is refused with INVALID_CRN so a key is never picked by a guess.
 */
export interface Crn {
  cloud: string;
  scope: string;
  service: string;
  region: string;
  account: string;
  instance: string;
  resourceType: string;
  resource: string;
}

const SEGMENT = /^[A-Za-z0-9._-]+$/;
const CRN_LENGTH_MAX = 512;

export function formatCrn(crn: Crn): string {
  return `crn:v1:${crn.cloud}:${crn.scope}:${crn.service}:${crn.region}:a/${crn.account}:${crn.instance}:${crn.resourceType}:${crn.resource}`;
}

export function parseCrn(text: unknown, expectedType?: string): Crn {
  const fail = (why: string): never => {
    throw new BlockvaultError(
      'INVALID_CRN',
      `${JSON.stringify(text)} is not a valid CRN: ${why}. Pass the full CRN, e.g. crn:v1:local:private:blockvault-hsm:local:a/default:<instance>:key:<id>`,
    );
  };
  if (typeof text !== 'string') return fail('expected a string');
  if (text.length > CRN_LENGTH_MAX) return fail(`longer than ${CRN_LENGTH_MAX} characters`);
  const parts = text.split(':');
  if (parts[0] !== 'crn') return fail(parts.length === 1 ? 'a bare id is not accepted' : 'it must start with "crn:"');
  if (parts.length !== 10) return fail(`expected 10 colon-separated fields, got ${parts.length}`);
  const [, version, cloud, scope, service, region, accountPart, instance, resourceType, resource] = parts as [
    string, string, string, string, string, string, string, string, string, string,
  ];
  if (version !== 'v1') return fail(`unsupported version "${version}"`);
  if (!accountPart.startsWith('a/')) return fail('the account field must look like a/<account>');
  const account = accountPart.slice(2);
  for (const [name, value] of Object.entries({ cloud, scope, service, region, account, instance, resourceType, resource })) {
    if (!SEGMENT.test(value)) return fail(`field ${name} is empty or has characters outside [A-Za-z0-9._-]`);
  }
  if (expectedType !== undefined && resourceType !== expectedType) return fail(`expected a ${expectedType} CRN, got a ${resourceType} CRN`);
  return { cloud, scope, service, region, account, instance, resourceType, resource };
}
