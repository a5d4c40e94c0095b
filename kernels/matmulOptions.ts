// A batched matrix product's shape, shared by the matmul kernels (matmul.ts,
// matmulTexture.ts) in a file of their own so the variants need not import each other.
import type { Operand } from './operand.ts';

export interface MatmulOptions {
  transA: boolean;
  transB: boolean;
  /** batch counts of A and B (1 = broadcast) and of C */
  batchA: number;
  batchB: number;
  batch: number;
  M: number;
  N: number;
  K: number;
  /** optional bias of length N added to every row (fused linear layer) */
  bias?: Operand | undefined;
}
