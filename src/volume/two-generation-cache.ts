/**
 * A bounded map from cluster index to a value, the least recently used entries dropped first
 * (approximately), with a hit costing one Map lookup: two generations instead of a strict LRU
 * list. Entries go into `young`; once young's cost reaches half the budget, `old` is dropped and
 * `young` becomes `old`; a hit in `old` moves the entry back to `young`. So the cost held stays
 * within the budget, and every entry used since the last swap survives the next one.
 *
 * Used for the split layout's meta cache (cluster-store.ts; cost 1 per entry) and an object
 * store's memory of cluster images (object-store.ts; cost in bytes).
 */
import { assert } from '../errors.js';

export class TwoGenerationCache<V> {
  private young = new Map<number, V>();
  private old = new Map<number, V>();
  private youngCost = 0;
  private readonly halfBudget: number;

  /** `budget` 0 (or 1) keeps nothing. `costOf` is called on values as they enter and leave `young`. */
  constructor(
    budget: number,
    private readonly costOf: (value: V) => number,
  ) {
    assert(Number.isSafeInteger(budget) && budget >= 0, 'a cache budget is a whole number');
    this.halfBudget = Math.floor(budget / 2);
  }

  get size(): number {
    return this.young.size + this.old.size;
  }

  /** The entry, or undefined when not cached. */
  get(key: number): V | undefined {
    const entry = this.young.get(key);
    if (entry !== undefined) return entry;
    const aged = this.old.get(key);
    if (aged !== undefined) {
      this.old.delete(key);
      this.setYoung(key, aged);
    }
    return aged;
  }

  set(key: number, value: V): void {
    if (this.halfBudget === 0) return;
    this.old.delete(key);
    this.setYoung(key, value);
  }

  delete(key: number): void {
    if (this.young.has(key)) this.youngCost -= this.costOf(this.young.get(key) as V);
    this.young.delete(key);
    this.old.delete(key);
  }

  clear(): void {
    this.young.clear();
    this.old.clear();
    this.youngCost = 0;
  }

  private setYoung(key: number, value: V): void {
    if (this.young.has(key)) this.youngCost -= this.costOf(this.young.get(key) as V);
    this.young.set(key, value);
    this.youngCost += this.costOf(value);
    if (this.youngCost >= this.halfBudget) {
      this.old = this.young;
      this.young = new Map();
      this.youngCost = 0;
    }
  }
}
