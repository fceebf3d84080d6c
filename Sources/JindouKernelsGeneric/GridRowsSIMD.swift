import JindouTensors

// The SIMD row kernels of the grid and ternary formats (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
// IQ3_S, IQ1_S, IQ1_M, TQ1_0, TQ2_0) and MXFP4, chosen in `Kernels.computeRows` before the
// scalar ones (BlockDots.swift). Every kernel here computes the scalar kernel's integer sums
// exactly (tests compare every kernel set with the same reference); only the order of the
// float additions differs.
//
// Two paths per format:
// - one token (decode): a fused kernel per format that decodes each super-block in
//   registers and multiplies it with the token's int8 activations (GridKernels*.swift);
// - several tokens (prefill, experts with several tokens): each row is decoded once per
//   call into a small table on the stack (GridTiles.swift: unsigned int8 weights with the
//   sign folded in by an offset, per-16 scales, one float per super-block), and every token
//   runs one shared integer dot over it — the grid lookups and signs are paid once per row,
//   not once per token as in ggml's `vec_dot` loop. MXFP4 on AVX-512 decodes in registers
//   for four tokens at a time instead; TQ1_0/TQ2_0, whose decoding is a few shifts, run the
//   one-token kernel per token.
//
// Bytes read per call: rows × rowBytes of weights (IQ2_XXS 0.258, IQ1_S 0.195, MXFP4 0.531
// bytes per weight); the activations (tokens × columns bytes) stay in L1/L2. The grid
// formats are compute-bound on these machines (a table lookup per 8 weights), so the aim is
// instructions per weight, not the memory roofline.

#if JINDOU_AVX2
/// Runs the SIMD kernel of `format` if this file has one; false to fall back to the scalar one.
@inline(__always)
func gridRowsSIMD(_ format: BlockFormat, _ a: QuantizedActivations, weight: WeightMatrix, rows: Range<Int>,
                  y: UnsafeMutablePointer<Float>, outputStride: Int) -> Bool {
    switch format {
    case .iq2_xxs: gridRows(SignedGridKernel<IQ2_XXSFormat>.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .iq2_xs: gridRows(SignedGridKernel<IQ2_XSFormat>.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .iq2_s: gridRows(SignedGridKernel<IQ2_SFormat>.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .iq3_xxs: gridRows(SignedGridKernel<IQ3_XXSFormat>.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .iq3_s: gridRows(SignedGridKernel<IQ3_SFormat>.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .iq1_s: gridRows(IQ1_SKernel.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .iq1_m: gridRows(IQ1_MKernel.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .tq1_0: ternaryRows(a, ternary1: true, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .tq2_0: ternaryRows(a, ternary1: false, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .mxfp4: mxfp4Rows(a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    default: return false
    }
    return true
}
#endif
