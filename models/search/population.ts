// The search's population: genomes kept in descending order of score in one typed array, with
// duplicates refused, so the best designs seed the next mutations without allocation.

/** A bounded population of fixed-length genomes sorted by descending score. */
export class Population {
  /** Member i's genome is genomes[i * genomeLength, (i + 1) * genomeLength). */
  readonly genomes: Int32Array;
  readonly scores: Float64Array;
  size = 0;

  constructor(
    readonly capacity: number,
    readonly genomeLength: number,
  ) {
    this.genomes = new Int32Array(capacity * genomeLength);
    this.scores = new Float64Array(capacity);
  }

  /** Copies member `i`'s genome into `out`. */
  copyMember(i: number, out: Int32Array): void {
    const n = this.genomeLength;
    for (let k = 0, src = i * n; k < n; k++) out[k] = this.genomes[src + k]!;
  }

  /**
   * Inserts a genome at its place by score (after members of equal score) unless the population is
   * full and it scores no better than the last, or the same genome is already there with the same
   * score. When full, the last member drops out. Returns whether it was inserted.
   */
  insert(genome: Int32Array, score: number): boolean {
    const n = this.genomeLength;
    const scores = this.scores;
    const pop = this.genomes;
    let size = this.size;
    if (size === this.capacity && score <= scores[size - 1]!) return false;
    let lo = 0;
    let hi = size;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (scores[mid]! >= score) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo - 1; i >= 0 && scores[i] === score; i--) {
      let same = true;
      for (let k = 0; k < n; k++) {
        if (pop[i * n + k] !== genome[k]) {
          same = false;
          break;
        }
      }
      if (same) return false;
    }
    if (size === this.capacity) size--;
    scores.copyWithin(lo + 1, lo, size);
    pop.copyWithin((lo + 1) * n, lo * n, size * n);
    scores[lo] = score;
    pop.set(genome, lo * n);
    this.size = size + 1;
    return true;
  }
}
