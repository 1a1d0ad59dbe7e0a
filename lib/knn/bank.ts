/**
 * MemoryBank: a growable set of d-dimensional vectors with exact kNN search (the same kernels
 * as knnSearch) and an atomic, checksummed file format.
 */
import type { NativeMemoryBank } from '../core/addon.js';
import { callNativeSync } from '../core/errors.js';
import { native } from '../core/native.js';
import { expectInteger, expectObject, expectOneOf, expectString } from '../core/validate.js';
import { KNN_METRICS, KNN_SCREENING, type KnnMetric, type KnnScreening } from './exact.js';
import type { Matrix } from './rows.js';
import { adoptOrCreate, loaded, VectorStore } from './vector-store.js';

export interface MemoryBankOptions {
  /** Default 'l2sq' (PatchCore's and faiss IndexFlatL2's squared distances). */
  metric?: KnnMetric;
  /**
   * Default 'auto'. With 'auto' or 'bf16', an l2 / l2sq bank on a CPU with AVX512-BF16 keeps a
   * bfloat16 copy of its rows (+50% memory) for screened exact searches; 'off' keeps none.
   */
  screening?: KnnScreening;
}

/**
 * A growable set of d-dimensional vectors with exact kNN search and an atomic,
 * checksummed file format.
 *
 * Concurrent `search()` / `save()` calls are fine; `add()` while any operation is in flight
 * rejects with ERR_BUSY, and so does `dispose()`. After `dispose()` every call rejects with
 * ERR_DISPOSED.
 * @example
 * const bank = new MemoryBank(1536)
 * await bank.add(features)                 // n x 1536
 * const { distances } = await bank.search(patches, 1)
 * await bank.save('bank.anb')
 */
export class MemoryBank extends VectorStore<NativeMemoryBank> {
  constructor(dim: number, options: MemoryBankOptions = {}) {
    super(
      adoptOrCreate(dim, options, () => {
        expectInteger(dim, 'dim', { min: 1, max: 1 << 24 });
        const o = expectObject(options, 'options');
        const metric = o.metric === undefined ? 'l2sq' : expectOneOf(o.metric, 'options.metric', KNN_METRICS);
        const screening = o.screening === undefined ? 'auto' : expectOneOf(o.screening, 'options.screening', KNN_SCREENING);
        return callNativeSync(() => new (native().MemoryBank)(dim, metric, screening));
      }),
      'MemoryBank',
      'bank',
    );
  }

  /** Reads a bank written by `save()`. A truncated or corrupted file rejects with ERR_INVALID_FILE. */
  static async load(path: string, options: { screening?: KnnScreening } = {}): Promise<MemoryBank> {
    expectString(path, 'path');
    const o = expectObject(options, 'options');
    const screening = o.screening === undefined ? 'auto' : expectOneOf(o.screening, 'options.screening', KNN_SCREENING);
    return loaded(() => native().MemoryBank.load(path, screening), (first, second) => new MemoryBank(first, second));
  }

  get metric(): KnnMetric {
    return this.handle.metric as KnnMetric;
  }
  /** 'off' when searches never use bf16 screening (option 'off', another metric, or a CPU without AVX512-BF16). */
  get screening(): KnnScreening {
    return this.handle.screening;
  }

  /** Appends rows (a Float32Array of n x dim values, copied). */
  async add(rows: Float32Array | Matrix): Promise<void> {
    await this.addRows(rows, 'rows');
  }
}
