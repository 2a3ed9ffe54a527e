// Small dense linear algebra on typed arrays for embedding compression: a symmetric eigensolver
// (Householder tridiagonalisation + implicit QL) and SVD / truncated SVD built on Gram matrices.

/** Reusable buffers for `symmetricEigen`, so hot loops over many small matrices do not allocate. */
export class EigenWorkspace {
  capacity: number;
  values: Float64Array;
  vectors: Float64Array;
  private offDiag: Float64Array;
  private work: Float64Array;
  constructor(capacity = 1) {
    this.capacity = capacity;
    this.values = new Float64Array(capacity);
    this.vectors = new Float64Array(capacity * capacity);
    this.offDiag = new Float64Array(capacity);
    this.work = new Float64Array(capacity * capacity);
  }
  /** Grows the buffers to hold an n x n problem. */
  ensure(n: number): void {
    if (n <= this.capacity) return;
    this.capacity = n;
    this.values = new Float64Array(n);
    this.vectors = new Float64Array(n * n);
    this.offDiag = new Float64Array(n);
    this.work = new Float64Array(n * n);
  }
  /** Internal scratch (the column-major copy used by the reduction). */
  scratch(): { e: Float64Array; w: Float64Array } {
    return { e: this.offDiag, w: this.work };
  }
}

/**
 * Eigen-decomposition of the symmetric n x n matrix `a` (row-major, only read).
 * On return `ws.values[0..n)` holds eigenvalues in descending order and row j of
 * `ws.vectors` (n x n, row-major) the unit eigenvector of value j.
 * Algorithm: Householder reduction to tridiagonal form then implicit QL with shifts
 * (tred2/tql2 of EISPACK as ported in JAMA, Bowdler, Martin, Reinsch & Wilkinson 1968).
 * hypot is written out: Math.hypot is several times slower in V8 and the values here cannot overflow.
 */
export function symmetricEigen(a: Float64Array, n: number, ws: EigenWorkspace): void {
  ws.ensure(n);
  const d = ws.values;
  const { e, w: V } = ws.scratch();
  // V[i*n+j] plays JAMA's V[i][j].
  for (let i = 0; i < n * n; i++) V[i] = a[i]!;
  if (n === 1) {
    d[0] = a[0]!;
    ws.vectors[0] = 1;
    return;
  }
  tred2(V, d, e, n);
  // tql2 rotates columns of V; rotate rows of its transpose instead so the inner loop is contiguous.
  const W = ws.vectors;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) W[j * n + i] = V[i * n + j]!;
  tql2(W, d, e, n);
  // Sort descending (tql2 leaves them unsorted); selection sort is fine for the sizes used here.
  for (let i = 0; i < n - 1; i++) {
    let k = i;
    let p = d[i]!;
    for (let j = i + 1; j < n; j++) {
      if (d[j]! > p) {
        k = j;
        p = d[j]!;
      }
    }
    if (k !== i) {
      d[k] = d[i]!;
      d[i] = p;
      const ri = i * n;
      const rk = k * n;
      for (let j = 0; j < n; j++) {
        const t = W[ri + j]!;
        W[ri + j] = W[rk + j]!;
        W[rk + j] = t;
      }
    }
  }
}

function tred2(V: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let j = 0; j < n; j++) d[j] = V[(n - 1) * n + j]!;
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]!);
    if (scale === 0) {
      e[i] = d[i - 1]!;
      for (let j = 0; j < i; j++) {
        d[j] = V[(i - 1) * n + j]!;
        V[i * n + j] = 0;
        V[j * n + i] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] = d[k]! / scale;
        h += d[k]! * d[k]!;
      }
      let f = d[i - 1]!;
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        V[j * n + i] = f;
        g = e[j]! + V[j * n + j]! * f;
        for (let k = j + 1; k <= i - 1; k++) {
          const vkj = V[k * n + j]!;
          g += vkj * d[k]!;
          e[k] = e[k]! + vkj * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] = e[j]! / h;
        f += e[j]! * d[j]!;
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] = e[j]! - hh * d[j]!;
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        g = e[j]!;
        for (let k = j; k <= i - 1; k++) V[k * n + j] = V[k * n + j]! - (f * e[k]! + g * d[k]!);
        d[j] = V[(i - 1) * n + j]!;
        V[i * n + j] = 0;
      }
    }
    d[i] = h;
  }
  for (let i = 0; i < n - 1; i++) {
    V[(n - 1) * n + i] = V[i * n + i]!;
    V[i * n + i] = 1;
    const h = d[i + 1]!;
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = V[k * n + i + 1]! / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += V[k * n + i + 1]! * V[k * n + j]!;
        for (let k = 0; k <= i; k++) V[k * n + j] = V[k * n + j]! - g * d[k]!;
      }
    }
    for (let k = 0; k <= i; k++) V[k * n + i + 1] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = V[(n - 1) * n + j]!;
    V[(n - 1) * n + j] = 0;
  }
  V[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
}

/** Implicit QL on the tridiagonal (d, e); W holds the transposed eigenvector matrix (rows). */
function tql2(W: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i]!;
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]!) + Math.abs(e[l]!));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]!) <= eps * tst1) break;
      m++;
    }
    if (m > l) {
      let iter = 0;
      do {
        iter++;
        let g = d[l]!;
        let p = (d[l + 1]! - g) / (2 * e[l]!);
        let r = Math.sqrt(p * p + 1);
        if (p < 0) r = -r;
        d[l] = e[l]! / (p + r);
        d[l + 1] = e[l]! * (p + r);
        const dl1 = d[l + 1]!;
        let h = g - d[l]!;
        for (let i = l + 2; i < n; i++) d[i] = d[i]! - h;
        f += h;
        p = d[m]!;
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1]!;
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i]!;
          h = c * p;
          r = Math.sqrt(p * p + e[i]! * e[i]!);
          e[i + 1] = s * r;
          s = e[i]! / r;
          c = p / r;
          p = c * d[i]! - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]!);
          const r0 = i * n;
          const r1 = (i + 1) * n;
          for (let k = 0; k < n; k++) {
            const hk = W[r1 + k]!;
            const wk = W[r0 + k]!;
            W[r1 + k] = s * wk + c * hk;
            W[r0 + k] = c * wk - s * hk;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]!) / dl1;
        e[l] = s * p;
        d[l] = c * p;
        if (iter > 200) break; // never seen in practice; guards against NaN input looping forever
      } while (Math.abs(e[l]!) > eps * tst1);
    }
    d[l] = d[l]! + f;
    e[l] = 0;
  }
}

/** Result of `gramSvd`: the leading `rank` singular triplets, U as m x rank, Vt as rank x n (row-major). */
export interface SvdResult {
  rank: number;
  s: Float64Array;
  u: Float64Array;
  vt: Float64Array;
}

/**
 * Writes G = A A^T (m x m) for a row-major m x n matrix A into `g`.
 */
export function gramRows(a: ArrayLike<number>, m: number, n: number, g: Float64Array): void {
  for (let i = 0; i < m; i++) {
    const oi = i * n;
    for (let j = 0; j <= i; j++) {
      const oj = j * n;
      let acc = 0;
      for (let k = 0; k < n; k++) acc += a[oi + k]! * a[oj + k]!;
      g[i * m + j] = acc;
      g[j * m + i] = acc;
    }
  }
}

/**
 * Adds the upper triangle of P^T P onto `g` (n x n), where `panel` holds a block of `b` rows of an
 * n-column matrix column by column (panel[p*b + i] = row i, column p). Each G entry is one contiguous
 * dot product kept in registers, four entries at a time, so G is touched once per block, not per row.
 */
export function gramPanel(panel: Float64Array, b: number, n: number, g: Float64Array): void {
  for (let p = 0; p < n; p += 2) {
    const op = p * b;
    const two = p + 1 < n;
    const op1 = op + b;
    for (let q = p; q < n; q += 2) {
      const oq = q * b;
      const hasQ1 = q + 1 < n;
      const oq1 = hasQ1 ? oq + b : oq;
      let s00 = 0;
      let s01 = 0;
      let s10 = 0;
      let s11 = 0;
      if (two) {
        for (let i = 0; i < b; i++) {
          const a0 = panel[op + i]!;
          const a1 = panel[op1 + i]!;
          const c0 = panel[oq + i]!;
          const c1 = panel[oq1 + i]!;
          s00 += a0 * c0;
          s01 += a0 * c1;
          s10 += a1 * c0;
          s11 += a1 * c1;
        }
      } else {
        for (let i = 0; i < b; i++) {
          const a0 = panel[op + i]!;
          s00 += a0 * panel[oq + i]!;
          s01 += a0 * panel[oq1 + i]!;
        }
      }
      const gp = p * n;
      g[gp + q] = g[gp + q]! + s00;
      if (hasQ1) g[gp + q + 1] = g[gp + q + 1]! + s01;
      if (two) {
        const gp1 = gp + n;
        // (p+1, q) lies below the diagonal when q == p; its mirror (p, p+1) is s01 already.
        if (q > p) g[gp1 + q] = g[gp1 + q]! + s10;
        if (hasQ1) g[gp1 + q + 1] = g[gp1 + q + 1]! + s11;
      }
    }
  }
}

/**
 * Writes G = A^T A (n x n, upper triangle; call mirrorUpper after) for a row-major m x n matrix A,
 * rows [rowStart, rowEnd) only when given, added onto `g` when `accumulate`.
 */
export function gramCols(
  a: ArrayLike<number>,
  m: number,
  n: number,
  g: Float64Array,
  options: { rowStart?: number; rowEnd?: number; accumulate?: boolean; rowOffset?: number } = {},
): void {
  const start = options.rowStart ?? 0;
  const end = options.rowEnd ?? m;
  const base = options.rowOffset ?? 0;
  if (!options.accumulate) g.fill(0, 0, n * n);
  const B = 64;
  const panel = new Float64Array(B * n);
  for (let r0 = start; r0 < end; r0 += B) {
    const b = Math.min(B, end - r0);
    for (let i = 0; i < b; i++) {
      const o = base + (r0 + i) * n;
      for (let p = 0; p < n; p++) panel[p * b + i] = a[o + p]!;
    }
    gramPanel(panel, b, n, g);
  }
}

/** Copies the upper triangle of an n x n matrix onto its lower triangle. */
export function mirrorUpper(g: Float64Array, n: number): void {
  for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) g[q * n + p] = g[p * n + q]!;
}

/**
 * Thin SVD of a small row-major m x n matrix from the eigen-decomposition of its smaller Gram matrix,
 * keeping all min(m, n) triplets in descending order. Exact up to rounding at full rank because U or
 * V is orthonormal by construction; small singular values carry absolute error ~ eps * s_max.
 */
export function gramSvd(a: ArrayLike<number>, m: number, n: number, ws = new EigenWorkspace()): SvdResult {
  const p = Math.min(m, n);
  const s = new Float64Array(p);
  const u = new Float64Array(m * p);
  const vt = new Float64Array(p * n);
  if (m <= n) {
    const g = new Float64Array(m * m);
    gramRows(a, m, n, g);
    symmetricEigen(g, m, ws);
    for (let j = 0; j < p; j++) {
      s[j] = Math.sqrt(Math.max(ws.values[j]!, 0));
      for (let i = 0; i < m; i++) u[i * p + j] = ws.vectors[j * m + i]!;
      // v_j = A^T u_j / s_j
      if (s[j]! > 0) {
        for (let k = 0; k < n; k++) {
          let acc = 0;
          for (let i = 0; i < m; i++) acc += ws.vectors[j * m + i]! * a[i * n + k]!;
          vt[j * n + k] = acc / s[j]!;
        }
      }
    }
  } else {
    const g = new Float64Array(n * n);
    gramCols(a, m, n, g);
    mirrorUpper(g, n);
    symmetricEigen(g, n, ws);
    for (let j = 0; j < p; j++) {
      s[j] = Math.sqrt(Math.max(ws.values[j]!, 0));
      for (let k = 0; k < n; k++) vt[j * n + k] = ws.vectors[j * n + k]!;
      if (s[j]! > 0) {
        for (let i = 0; i < m; i++) {
          let acc = 0;
          for (let k = 0; k < n; k++) acc += a[i * n + k]! * ws.vectors[j * n + k]!;
          u[i * p + j] = acc / s[j]!;
        }
      }
    }
  }
  return { rank: p, s, u, vt };
}

/** C = A (m x k) * B (k x n), all row-major; accumulates in float64 and writes into `out`. */
export function matmul(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  m: number,
  k: number,
  n: number,
  out: Float32Array | Float64Array,
): void {
  const acc = new Float64Array(n);
  for (let i = 0; i < m; i++) {
    acc.fill(0);
    const oa = i * k;
    for (let p = 0; p < k; p++) {
      const x = a[oa + p]!;
      if (x === 0) continue;
      const ob = p * n;
      for (let j = 0; j < n; j++) acc[j] = acc[j]! + x * b[ob + j]!;
    }
    const oc = i * n;
    for (let j = 0; j < n; j++) out[oc + j] = acc[j]!;
  }
}

/** G = C C^T (m x m) for a row-major m x n matrix with long rows: column blocks of C are already
 * panels in gramPanel's layout (row i contiguous), so G accumulates block by block in cache. */
export function gramRowsBlocked(c: Float64Array, m: number, n: number, g: Float64Array, block = 64): void {
  g.fill(0, 0, m * m);
  const t = new Float64Array(block * m);
  for (let q0 = 0; q0 < n; q0 += block) {
    const w = Math.min(block, n - q0);
    for (let i = 0; i < m; i++) {
      const oi = i * n + q0;
      for (let q = 0; q < w; q++) t[i * w + q] = c[oi + q]!;
    }
    gramPanel(t, w, m, g);
  }
  mirrorUpper(g, m);
}

/**
 * out[i*ldo + oOff + j] = scale_j * dot(A row i, B row j) for A (m x k) and B (n x k), both row-major
 * with row strides lda/ldb: the "NT" product A B^T. Two-by-two register blocking keeps four dot
 * products in flight per pass over the rows, which is what makes it several times faster than a naive loop.
 */
export function gemmNT(
  a: Float64Array,
  lda: number,
  m: number,
  b: Float64Array,
  ldb: number,
  n: number,
  k: number,
  out: Float64Array,
  ldo: number,
  oOff = 0,
): void {
  for (let i = 0; i < m; i += 2) {
    const ai = i * lda;
    const two = i + 1 < m;
    const ai1 = two ? ai + lda : ai;
    for (let j = 0; j < n; j += 2) {
      const bj = j * ldb;
      const hasJ1 = j + 1 < n;
      const bj1 = hasJ1 ? bj + ldb : bj;
      let s00 = 0;
      let s01 = 0;
      let s10 = 0;
      let s11 = 0;
      for (let p = 0; p < k; p++) {
        const x0 = a[ai + p]!;
        const x1 = a[ai1 + p]!;
        const y0 = b[bj + p]!;
        const y1 = b[bj1 + p]!;
        s00 += x0 * y0;
        s01 += x0 * y1;
        s10 += x1 * y0;
        s11 += x1 * y1;
      }
      const o = i * ldo + oOff + j;
      out[o] = s00;
      if (hasJ1) out[o + 1] = s01;
      if (two) {
        out[o + ldo] = s10;
        if (hasJ1) out[o + ldo + 1] = s11;
      }
    }
  }
}

/** One truncated-SVD step of TT-SVD on a large m x n matrix C: keeps `r` (or, with delta2, the fewest
 * needed, at most `r`) singular triplets; returns U (m x r) and S V^T (r x n). */
export function truncatedSvdStep(
  c: Float64Array,
  m: number,
  n: number,
  maxRank: number,
  delta2 = 0,
  ws = new EigenWorkspace(),
): { rank: number; u: Float64Array; svt: Float64Array; s: Float64Array } {
  const p = Math.min(m, n);
  const g = new Float64Array(p * p);
  if (m <= n) gramRowsBlocked(c, m, n, g);
  else {
    gramCols(c, m, n, g);
    mirrorUpper(g, n);
  }
  symmetricEigen(g, p, ws);
  let r = Math.min(maxRank, p);
  if (delta2 > 0) {
    let tail = 0;
    let k = p;
    while (k > 1 && tail + Math.max(ws.values[k - 1]!, 0) <= delta2) {
      tail += Math.max(ws.values[k - 1]!, 0);
      k--;
    }
    r = Math.min(r, k);
  }
  r = Math.max(1, r);
  const s = new Float64Array(r);
  for (let j = 0; j < r; j++) s[j] = Math.sqrt(Math.max(ws.values[j]!, 0));
  const u = new Float64Array(m * r);
  const svt = new Float64Array(r * n);
  const vec = ws.vectors;
  if (m <= n) {
    for (let i = 0; i < m; i++) for (let j = 0; j < r; j++) u[i * r + j] = vec[j * m + i]!;
    // S V^T = U^T C: eigenvector rows (r x m) times column blocks of C transposed into (block x m) panels.
    const block = 64;
    const panel = new Float64Array(block * m);
    for (let q0 = 0; q0 < n; q0 += block) {
      const w = Math.min(block, n - q0);
      for (let i = 0; i < m; i++) {
        const oc = i * n + q0;
        for (let q = 0; q < w; q++) panel[q * m + i] = c[oc + q]!;
      }
      gemmNT(vec, m, r, panel, m, w, m, svt, n, q0);
    }
  } else {
    const tiny = Math.max(ws.values[0]!, 0) * 1e-28;
    for (let j = 0; j < r; j++) {
      const sj = ws.values[j]! > tiny ? s[j]! : 0;
      for (let q = 0; q < n; q++) svt[j * n + q] = sj * vec[j * n + q]!;
    }
    // U = C V / s: rows of C against eigenvector rows, then scale columns.
    gemmNT(c, n, m, vec, n, r, n, u, r);
    for (let j = 0; j < r; j++) {
      const inv = s[j]! > 0 && ws.values[j]! > tiny ? 1 / s[j]! : 0;
      for (let i = 0; i < m; i++) u[i * r + j] = u[i * r + j]! * inv;
    }
  }
  return { rank: r, u, svt, s };
}
