# Reference for bench/compression.ts: the same per-row TT-SVD (Oseledets 2011, Alg. 1) at fixed ranks,
# batched over all rows with numpy's stacked SVD, to compare speed and error with the TypeScript version.
# Usage: python3 bench/compression_numpy.py [V] [d] [shape e.g. 8x8x12] [ranks e.g. 8x4]
import sys, time
import numpy as np

def tt_row_batched(X, shape, ranks):
    """TT-SVD of every row of X (V x d) at fixed ranks; returns cores [V, r_{k-1}, I_k, r_k]."""
    V = X.shape[0]
    C = X.astype(np.float64).reshape(V, 1, -1)
    r_prev, cores = 1, []
    for k in range(len(shape) - 1):
        C = C.reshape(V, r_prev * shape[k], -1)
        U, S, Vt = np.linalg.svd(C, full_matrices=False)
        r = min(ranks[k], S.shape[1])
        cores.append(U[:, :, :r].reshape(V, r_prev, shape[k], r))
        C = S[:, :r, None] * Vt[:, :r, :]
        r_prev = r
    cores.append(C.reshape(V, r_prev, shape[-1], 1))
    return cores

def reconstruct(cores):
    V = cores[0].shape[0]
    acc = cores[0].reshape(V, -1, cores[0].shape[3])
    for c in cores[1:]:
        acc = np.einsum('vpa,vaib->vpib', acc, c).reshape(V, -1, c.shape[3])
    return acc.reshape(V, -1)

def main():
    V = int(sys.argv[1]) if len(sys.argv) > 1 else 50257
    d = int(sys.argv[2]) if len(sys.argv) > 2 else 768
    shape = [int(x) for x in (sys.argv[3] if len(sys.argv) > 3 else '8x8x12').split('x')]
    ranks = [int(x) for x in (sys.argv[4] if len(sys.argv) > 4 else '8x4').split('x')]
    rng = np.random.default_rng(0)
    # Structured like a trained table: a low-rank part plus noise.
    X = (rng.standard_normal((V, 64)) @ rng.standard_normal((64, d)) * 0.1 + rng.standard_normal((V, d)) * 0.05).astype(np.float32)
    t = time.perf_counter()
    cores = tt_row_batched(X, shape, ranks)
    secs = time.perf_counter() - t
    Y = reconstruct(cores)
    err = np.linalg.norm(Y - X) / np.linalg.norm(X)
    stored = sum(c[0].size for c in cores)
    print(f'numpy batched tt-row V={V} d={d} shape={"x".join(map(str, shape))} ranks={"x".join(map(str, ranks))}: '
          f'{secs:.2f} s, ratio {d / stored:.2f}x, rel err {err:.4f}')

if __name__ == '__main__':
    main()
