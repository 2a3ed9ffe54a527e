// Worker thread of the trainer's GEMM (wasm-gemm.ts): a second instance of the SIMD kernel on the
// same shared memory computes the upper output rows while the caller does the lower ones.
import { workerData } from 'node:worker_threads';

const { module, memory, ctrl } = workerData;
const gemm = new WebAssembly.Instance(module, { env: { mem: memory } }).exports.gemm;
const JB = 64;
Atomics.store(ctrl, 10, 1);
Atomics.notify(ctrl, 10);
let seen = 0;
for (;;) {
  Atomics.wait(ctrl, 0, seen);
  seen = Atomics.load(ctrl, 0);
  const [a, b, c, i0, i1, n4, k, ldc] = ctrl.subarray(2, 10);
  let status = 1;
  try {
    // Same panels and pointers as WasmGemm.rows, so each element is computed identically.
    for (let jj = 0; jj < n4; jj += JB) gemm(a + i0 * k * 4, b + jj * k * 4, c + (i0 * ldc + jj) * 4, i1 - i0, Math.min(JB, n4 - jj), k, ldc);
  } catch {
    status = -1;
  }
  Atomics.store(ctrl, 1, status);
  Atomics.notify(ctrl, 1);
}
