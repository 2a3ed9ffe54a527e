// Expected entropy of a Gaussian-initialised weight matrix, in closed form from the
// Marchenko-Pastur law, so the architecture search never runs an SVD.
//
// H(W) = E[ sum_j log(1 + s_j^2 / eps^2) ] over the singular values s_j of W (m x n, entries
// N(0, sigma^2)). With p = min(m, n), q = max(m, n), the p squared singular values are q * x_j
// where x_j follow the Marchenko-Pastur law of ratio beta = p / q (unit variance) as m, n grow.
// So H = p * V(gamma, beta) with gamma = q * sigma^2 / eps^2 and V the Shannon transform of the
// Marchenko-Pastur law (Tulino & Verdu, "Random Matrix Theory and Wireless Communications",
// Foundations and Trends in Comm. and Inf. Theory 1(1), 2004, eq. 1.14; Verdu & Shamai 1999):
//   V(gamma, beta) = log(1 + gamma - F/4) + (1/beta) log(1 + gamma*beta - F/4) - F / (4 beta gamma)
//   F(gamma, beta) = ( sqrt(gamma (1 + sqrt beta)^2 + 1) - sqrt(gamma (1 - sqrt beta)^2 + 1) )^2
// (natural logarithms, so entropies are in nats).

/** Scale of the Gaussian initialisation and the resolution eps of the entropy. */
export interface MatrixEntropyOptions {
  /** Standard deviation of the initial weights (default 1, the standard Gaussian of MeRino/DeepMAD). */
  sigma?: number;
  /** Resolution eps in log(1 + s^2 / eps^2) (default 1). */
  eps?: number;
}

/** E[log(1 + gamma x)] for x distributed by the Marchenko-Pastur law of ratio beta in (0, 1]. */
export function marchenkoPasturShannon(gamma: number, beta: number): number {
  if (gamma <= 0) return 0;
  const sb = Math.sqrt(beta);
  const d = Math.sqrt(gamma * (1 + sb) * (1 + sb) + 1) - Math.sqrt(gamma * (1 - sb) * (1 - sb) + 1);
  const f = d * d;
  return Math.log(1 + gamma - f / 4) + Math.log(1 + gamma * beta - f / 4) / beta - f / (4 * beta * gamma);
}

/** Expected entropy H(W) in nats of an m x n Gaussian matrix (order of m and n does not matter). */
export function matrixEntropy(m: number, n: number, options: MatrixEntropyOptions = {}): number {
  if (!(m > 0 && n > 0)) return 0;
  const sigma = options.sigma ?? 1;
  const eps = options.eps ?? 1;
  const p = Math.min(m, n);
  const q = Math.max(m, n);
  return p * marchenkoPasturShannon((q * sigma * sigma) / (eps * eps), p / q);
}
