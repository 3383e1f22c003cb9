/**
 * Everything the CLI prints goes through here. Two modes:
 * - human: readable lines and tables on stdout; errors as `error CODE: message` on stderr.
 * - --json: exactly one JSON document on stdout for a success, and a JSON `{ "error": {...} }`
 *   on stderr for a failure, so `blockvault ... --json | jq` never sees anything else.
 * Progress bars and prompts never go to stdout (see progress.ts, passphrase.ts).
 */
import type { Writable } from 'node:stream';

export interface CliStreams {
  stdout: Writable & { isTTY?: boolean };
  stderr: Writable & { isTTY?: boolean; columns?: number };
}

export interface Column<Row> {
  header: string;
  value: (row: Row) => unknown;
}

export class Output {
  constructor(
    readonly json: boolean,
    readonly streams: CliStreams,
    /** Prefixed to every human line (the demo indents tables under its steps). */
    readonly indent = '',
  ) {}

  indented(prefix: string): Output {
    return new Output(this.json, this.streams, this.indent + prefix);
  }

  /** The command's result: the JSON document, or the human rendering. */
  result(data: unknown, human?: (out: Output) => void): void {
    if (this.json) {
      this.streams.stdout.write(toJson(data) + '\n');
    } else if (human !== undefined) {
      human(this);
    } else {
      this.fields(data);
    }
  }

  /** A human line on stdout; silent in --json mode. */
  line(text = ''): void {
    if (!this.json) this.streams.stdout.write((text === '' ? '' : this.indent + text) + '\n');
  }

  /** A note for a person on stderr (where a temp dir went, a hint); silent in --json mode. */
  note(text: string): void {
    if (!this.json) this.streams.stderr.write(text + '\n');
  }

  /** `key: value` lines for a flat object; nested objects and arrays are shown as compact JSON. */
  fields(data: unknown, indent = ''): void {
    if (data === null || typeof data !== 'object' || Array.isArray(data)) {
      this.line(indent + humanValue(data));
      return;
    }
    const entries = Object.entries(data as Record<string, unknown>);
    const width = Math.max(0, ...entries.map(([k]) => k.length));
    for (const [key, value] of entries) this.line(`${indent}${(key + ':').padEnd(width + 2)}${humanValue(value, key)}`);
  }

  table<Row>(rows: readonly Row[], columns: readonly Column<Row>[], emptyText = '(none)'): void {
    if (rows.length === 0) {
      this.line(emptyText);
      return;
    }
    const cells = rows.map((row) => columns.map((c) => humanValue(c.value(row))));
    const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)));
    const render = (values: string[]): string =>
      values
        .map((v, i) => (i === values.length - 1 ? v : v.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd();
    this.line(render(columns.map((c) => c.header.toUpperCase())));
    for (const row of cells) this.line(render(row));
  }
}

/** Times are epoch milliseconds in the API; people read them as ISO 8601 in UTC. */
export function humanValue(value: unknown, key = ''): string {
  if (value === null || value === undefined) return '-';
  // Epoch milliseconds (after 1973); smaller *AtMs values are offsets, e.g. "deleted 1325 ms in".
  if (typeof value === 'number' && /AtMs$|^(since|until)Ms$/.test(key) && value > 1e11) return new Date(value).toISOString();
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return toJson(value);
}

export function isoTime(ms: number | null | undefined): string {
  return typeof ms === 'number' && Number.isFinite(ms) ? new Date(ms).toISOString() : '-';
}

/** JSON with bigints as strings and bytes as base64, so any engine result serializes. */
export function toJson(data: unknown): string {
  return JSON.stringify(data, function replacer(this: unknown, key: string, value: unknown) {
    const original = (this as Record<string, unknown>)[key];
    if (original instanceof Uint8Array) return Buffer.from(original.buffer, original.byteOffset, original.byteLength).toString('base64');
    if (typeof value === 'bigint') return value.toString();
    if (value instanceof Map) return Object.fromEntries(value);
    if (value instanceof Set) return [...value];
    if (value instanceof Error) return { name: value.name, message: value.message };
    return value;
  });
}
