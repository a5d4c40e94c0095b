// Scoring an LR choice against ground truth (issue 15 item 4): a grid of training runs
// at several max LRs gives accuracy against LR; a method's regret is the best grid
// accuracy minus the accuracy at its pick, read off the grid curve by linear
// interpolation in log LR. A pick outside the grid has no reading (null): the curve
// beyond the grid is unknown.

export interface GridPoint {
  maxLr: number;
  /** accuracy (or any score, higher is better) at this max LR */
  acc: number;
}

/** The grid's score at `lr` (linear in log lr between grid points), or null outside the grid. */
export function gridScoreAt(grid: readonly GridPoint[], lr: number): number | null {
  const g = [...grid].sort((a, b) => a.maxLr - b.maxLr);
  if (g.length === 0 || !(lr >= g[0]!.maxLr) || !(lr <= g[g.length - 1]!.maxLr)) return null;
  for (let i = 0; i + 1 < g.length; i++) {
    const a = g[i]!;
    const b = g[i + 1]!;
    if (lr <= b.maxLr) {
      const t = Math.log(lr / a.maxLr) / Math.log(b.maxLr / a.maxLr);
      return a.acc + t * (b.acc - a.acc);
    }
  }
  return g[g.length - 1]!.acc;
}

/** Best grid score minus the score at `lr`: 0 at the grid's best, null outside the grid. */
export function regret(grid: readonly GridPoint[], lr: number): number | null {
  const at = gridScoreAt(grid, lr);
  return at === null ? null : Math.max(...grid.map((p) => p.acc)) - at;
}
