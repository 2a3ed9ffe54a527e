// Network effectiveness rho (DeepMAD, Shen et al., ICML 2023): how deep a network is for its width.
// Too deep for its width and the network stops being trainable, so the search bounds rho.

/** DeepMAD's bound on rho, MeRino's default. */
export const DEFAULT_RHO_MAX = 0.5;

/**
 * rho = L / (16 * log2 E). With L = 1, E = 256 it is 0.0078 (0.008) and with L = 24, E = 64 it is
 * 0.25, the two values of MeRino's Table 1.
 */
export function effectiveness(layers: number, width: number): number {
  return layers / (16 * Math.log2(width));
}

/** rho of a multi-block network: all layers, and the layer-averaged width as E. */
export function networkEffectiveness(blocks: ReadonlyArray<{ width: number; layers: number }>): number {
  let layers = 0;
  let widthSum = 0;
  for (const b of blocks) {
    layers += b.layers;
    widthSum += b.layers * b.width;
  }
  return effectiveness(layers, widthSum / layers);
}
