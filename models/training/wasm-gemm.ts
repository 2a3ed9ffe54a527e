// A WebAssembly SIMD (f32x4) kernel for the trainer's C = A · B^T, assembled here from bytes so no
// toolchain is needed. 2x4 blocks of C with eight f32x4 accumulators along k; the scalar
// JavaScript kernel handles edges, float64 arrays and K not divisible by 4. Large products split
// their output rows with a second instance in a worker thread over the same shared memory.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { ModelError, ValidationError } from '../../common/errors.ts';

const I32 = 0x7f;
const V128 = 0x7b;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}
const str = (s: string): number[] => [...uleb(s.length), ...new TextEncoder().encode(s)];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];

// Parameters: a, b, c (byte pointers), M (rows, even), N (cols, multiple of 4), K (multiple of 4), ldc (C row stride in floats).
const [pA, pB, pC, pM, pN, pK, pLdc] = [0, 1, 2, 3, 4, 5, 6];
// i32 locals
const [lI, lJ, lK, lKb, lA0, lA1, lB0, lB1, lB2, lB3, lC0, lC1] = [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18];
// v128 locals: acc[r][c] at 19 + r*4 + c, then a0, a1, b
const acc = (r: number, c: number): number => 19 + r * 4 + c;
const [vA0, vA1, vB] = [27, 28, 29];

const get = (l: number): number[] => [0x20, ...uleb(l)];
const set = (l: number): number[] => [0x21, ...uleb(l)];
const i32c = (n: number): number[] => [0x41, ...sleb(n)];
const add = [0x6a];
const mul = [0x6c];
const ltU = [0x49];
const simd = (op: number): number[] => [0xfd, ...uleb(op)];
const v128load = (offset = 0): number[] => [...simd(0x00), 0x04, ...uleb(offset)];
const f32x4Add = simd(0xe4);
const f32x4Mul = simd(0xe6);
const extract = (lane: number): number[] => [...simd(0x1f), lane];
const f32Add = [0x92];
const f32Store = (offset: number): number[] => [0x38, 0x02, ...uleb(offset)];
const zeroV = [...simd(0x0c), ...new Array<number>(16).fill(0)];
const loop = (body: number[]): number[] => [0x03, 0x40, ...body, 0x0b];
const brIf = (depth: number): number[] => [0x0d, ...uleb(depth)];

function hsum(v: number): number[] {
  return [...get(v), ...extract(0), ...get(v), ...extract(1), ...f32Add, ...get(v), ...extract(2), ...f32Add, ...get(v), ...extract(3), ...f32Add];
}

function kernelBody(): number[] {
  const kLoop: number[] = [
    ...get(lA0), ...get(lK), ...add, ...v128load(), ...set(vA0),
    ...get(lA1), ...get(lK), ...add, ...v128load(), ...set(vA1),
  ];
  [lB0, lB1, lB2, lB3].forEach((pb, c) => {
    kLoop.push(...get(pb), ...get(lK), ...add, ...v128load(), ...set(vB));
    kLoop.push(...get(acc(0, c)), ...get(vA0), ...get(vB), ...f32x4Mul, ...f32x4Add, ...set(acc(0, c)));
    kLoop.push(...get(acc(1, c)), ...get(vA1), ...get(vB), ...f32x4Mul, ...f32x4Add, ...set(acc(1, c)));
  });
  kLoop.push(...get(lK), ...i32c(16), ...add, ...set(lK), ...get(lK), ...get(lKb), ...ltU, ...brIf(0));

  const jLoop: number[] = [
    // b rows j..j+3
    ...get(pB), ...get(lJ), ...get(lKb), ...mul, ...add, ...set(lB0),
    ...get(lB0), ...get(lKb), ...add, ...set(lB1),
    ...get(lB1), ...get(lKb), ...add, ...set(lB2),
    ...get(lB2), ...get(lKb), ...add, ...set(lB3),
  ];
  for (let r = 0; r < 2; r++) for (let c = 0; c < 4; c++) jLoop.push(...zeroV, ...set(acc(r, c)));
  jLoop.push(...i32c(0), ...set(lK), ...loop(kLoop));
  // c row pointers: c + ((i + r) * ldc + j) * 4
  jLoop.push(...get(pC), ...get(lI), ...get(pLdc), ...mul, ...get(lJ), ...add, ...i32c(2), 0x74, ...add, ...set(lC0));
  jLoop.push(...get(lC0), ...get(pLdc), ...i32c(2), 0x74, ...add, ...set(lC1));
  for (let r = 0; r < 2; r++) for (let c = 0; c < 4; c++) jLoop.push(...get(r === 0 ? lC0 : lC1), ...hsum(acc(r, c)), ...f32Store(c * 4));
  jLoop.push(...get(lJ), ...i32c(4), ...add, ...set(lJ), ...get(lJ), ...get(pN), ...ltU, ...brIf(0));

  const iLoop: number[] = [
    ...get(pA), ...get(lI), ...get(lKb), ...mul, ...add, ...set(lA0),
    ...get(lA0), ...get(lKb), ...add, ...set(lA1),
    ...i32c(0), ...set(lJ),
    ...loop(jLoop),
    ...get(lI), ...i32c(2), ...add, ...set(lI), ...get(lI), ...get(pM), ...ltU, ...brIf(0),
  ];
  const code = [...get(pK), ...i32c(2), 0x74, ...set(lKb), ...i32c(0), ...set(lI), ...loop(iLoop), 0x0b];
  const locals = [2, ...uleb(12), I32, ...uleb(11), V128];
  return [...locals, ...code];
}

function moduleBytes(): Uint8Array {
  const type = section(1, [1, 0x60, 7, I32, I32, I32, I32, I32, I32, I32, 0]);
  // Shared memory (limits flag 3: min and max) so a worker's instance sees the same operands.
  const imports = section(2, [1, ...str('env'), ...str('mem'), 0x02, 0x03, 1, ...uleb(MAX_PAGES)]);
  const funcs = section(3, [1, 0]);
  const exports = section(7, [1, ...str('gemm'), 0x00, 0]);
  const body = kernelBody();
  const code = section(10, [1, ...uleb(body.length), ...body]);
  return Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...type, ...imports, ...funcs, ...exports, ...code]);
}

/** The slice of the WebAssembly JS API used here (the project's TS lib has no DOM types). */
interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Memory: new (d: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

type KernelFn = (a: number, b: number, c: number, m: number, n: number, k: number, ldc: number) => void;

/** 1 GiB of address space: the largest trainer product (logits, 1024 x 4096 over 256) needs 21 MB. */
const MAX_PAGES = 16384;
/** Multiply-adds below which a product stays on one thread (the hand-off costs tens of microseconds). */
const PARALLEL_MIN_MACS = 1 << 21;
/** Control words shared with the worker: [sequence, done, a, b, c (byte pointers), i0, i1, n4, k, ldc, ready]. */
const SEQ = 0;
const DONE = 1;
const READY = 10;
/** How long the first split waits for the worker to start before the kernel stays on one thread. */
const START_TIMEOUT_MS = 30_000;

let threads: number | undefined;

/** FLEETLM_TRAIN_THREADS, else the available cores (at most 2: the row split has two halves). */
function defaultThreads(): number {
  const env = process.env.FLEETLM_TRAIN_THREADS;
  if (env !== undefined && env !== '') return checkThreads(Number(env), 'FLEETLM_TRAIN_THREADS');
  return Math.min(2, availableParallelism());
}

function checkThreads(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1 || n > 2) throw new ValidationError(`${what} must be 1 or 2 (GEMM threads), got ${String(n)}`);
  return n;
}

/** Sets how many threads the large GEMMs use (1 or 2); results are bit-identical either way. */
export function setGemmThreads(n: number): void {
  threads = checkThreads(n, 'GEMM threads');
}

let parallelCalls = 0;

/** How many products have been split across two threads so far (lets tests see the split happen). */
export function parallelGemmCount(): number {
  return parallelCalls;
}

/** The thread count the large GEMMs use now. */
export function gemmThreads(): number {
  threads ??= defaultThreads();
  return threads;
}

/** The compiled kernel and its growable memory; undefined where WebAssembly SIMD is unavailable. */
class WasmGemm {
  private readonly memory = new WA.Memory({ initial: 16, maximum: MAX_PAGES, shared: true });
  private readonly module: object;
  private readonly fn: KernelFn;
  private f32: Float32Array;
  private ctrl: Int32Array | null | undefined;

  constructor() {
    this.module = new WA.Module(moduleBytes());
    const instance = new WA.Instance(this.module, { env: { mem: this.memory } });
    this.fn = instance.exports.gemm as KernelFn;
    this.f32 = new Float32Array(this.memory.buffer);
  }

  private ensure(floats: number): void {
    const bytes = floats * 4;
    if (bytes > this.memory.buffer.byteLength) {
      this.memory.grow(Math.ceil((bytes - this.memory.buffer.byteLength) / 65536));
      this.f32 = new Float32Array(this.memory.buffer);
    }
  }

  /**
   * The helper thread, started on first use and unref'd so it never keeps the process alive; null
   * when it did not come up (its error events cannot reach a thread blocked here, hence the timeout).
   */
  private helper(): Int32Array | null {
    if (this.ctrl !== undefined) return this.ctrl;
    const ctrl = new Int32Array(new SharedArrayBuffer(11 * 4));
    const worker = new Worker(new URL('./gemm-worker.mjs', import.meta.url), { workerData: { module: this.module, memory: this.memory, ctrl } });
    worker.unref();
    Atomics.wait(ctrl, READY, 0, START_TIMEOUT_MS);
    if (Atomics.load(ctrl, READY) !== 1) {
      void worker.terminate();
      this.ctrl = null;
      return null;
    }
    this.ctrl = ctrl;
    return ctrl;
  }

  /** Rows [i0, i1) of the 2x4-aligned part, in 64-column panels so a slice of B stays in L2. */
  private rows(aOff: number, bOff: number, cOff: number, i0: number, i1: number, N4: number, N: number, K: number): void {
    const JB = 64;
    for (let jj = 0; jj < N4; jj += JB) {
      const n = Math.min(JB, N4 - jj);
      this.fn((aOff + i0 * K) * 4, (bOff + jj * K) * 4, (cOff + i0 * N + jj) * 4, i1 - i0, n, K, N);
    }
  }

  /** C[M,N] (+)= A[M,K] · B[N,K]^T for the 2x4-aligned part; returns the aligned extents done. */
  run(A: Float32Array, B: Float32Array, C: Float32Array, M: number, N: number, K: number, accumulate: boolean): [number, number] {
    const M2 = M - (M % 2);
    const N4 = N - (N % 4);
    if (M2 === 0 || N4 === 0) return [0, 0];
    const aOff = 0;
    const bOff = M * K;
    const cOff = bOff + N * K;
    this.ensure(cOff + M * N);
    const mem = this.f32;
    mem.set(A.subarray(0, M * K), aOff);
    mem.set(B.subarray(0, N * K), bOff);
    const ctrl = gemmThreads() > 1 && M2 >= 4 && M2 * N4 * K >= PARALLEL_MIN_MACS ? this.helper() : null;
    if (ctrl) {
      // Split by output rows: every element is still one dot product in the same order, so the
      // result does not depend on the thread count.
      const half = (M2 >> 2) << 1;
      parallelCalls++;
      ctrl.set([aOff * 4, bOff * 4, cOff * 4, half, M2, N4, K, N], 2);
      Atomics.store(ctrl, DONE, 0);
      Atomics.add(ctrl, SEQ, 1);
      Atomics.notify(ctrl, SEQ);
      this.rows(aOff, bOff, cOff, 0, half, N4, N, K);
      while (Atomics.load(ctrl, DONE) === 0) Atomics.wait(ctrl, DONE, 0);
      if (Atomics.load(ctrl, DONE) < 0) throw new ModelError('the GEMM worker thread failed on its rows (rerun with --threads 1 or FLEETLM_TRAIN_THREADS=1)');
    } else {
      this.rows(aOff, bOff, cOff, 0, M2, N4, N, K);
    }
    for (let i = 0; i < M2; i++) {
      const src = cOff + i * N;
      const dst = i * N;
      if (accumulate) for (let j = 0; j < N4; j++) C[dst + j]! += mem[src + j]!;
      else for (let j = 0; j < N4; j++) C[dst + j] = mem[src + j]!;
    }
    return [M2, N4];
  }
}

let instance: WasmGemm | null | undefined;

/** The shared WASM kernel, or null when WebAssembly SIMD is unavailable or FLEETLM_NO_WASM is set. */
export function wasmGemm(): WasmGemm | null {
  if (instance !== undefined) return instance;
  try {
    instance = process.env.FLEETLM_NO_WASM ? null : new WasmGemm();
  } catch {
    instance = null;
  }
  return instance;
}
