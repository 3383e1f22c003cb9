import type { Database, RootDatabase } from 'lmdb';
import { BlockvaultError } from '../errors.js';
import type { TaskRecord } from './task-types.js';

/**
 * Tasks live in the sub-database `tasks` of the engine's LMDB environment, next to the volumes
 * they work on, so that a task's checkpoint can be written in the same transaction as the
 * clusters it moved (see `putInCurrentTxn`).
 */
export class TaskStore {
  readonly db: Database<TaskRecord, string>;

  constructor(root: RootDatabase) {
    this.db = root.openDB<TaskRecord, string>({ name: 'tasks', encoding: 'msgpack' });
  }

  get(id: string): TaskRecord | undefined {
    return this.db.get(id);
  }

  require(id: string): TaskRecord {
    const task = this.get(id);
    if (task === undefined) throw new BlockvaultError('NOT_FOUND', `No rotation task with id ${id}. List tasks with engine.tasks.list().`, { taskId: id });
    return task;
  }

  /** Every task, oldest first. A few per rotation, so a full read is fine. */
  list(): TaskRecord[] {
    const tasks: TaskRecord[] = [];
    for (const { value } of this.db.getRange()) tasks.push(value);
    return tasks.sort((a, b) => a.createdAtMs - b.createdAtMs || a.id.localeCompare(b.id));
  }

  /** Durable once the promise resolves. */
  async put(task: TaskRecord): Promise<void> {
    await this.db.put(task.id, task);
  }

  /**
   * Write inside the caller's open LMDB write transaction (a `transaction()` callback on the same
   * environment): it commits, or not, together with everything else in that transaction.
   */
  putInCurrentTxn(task: TaskRecord): void {
    this.db.putSync(task.id, task);
  }
}
