import JindouTensors

// The SIMD row kernels of the 32-weight legacy formats (Q4_0 … Q8_0) and the K-quants
// (Q2_K … Q6_K), chosen in `Kernels.computeRows` before the scalar ones (BlockDots.swift).
// Every kernel here computes the scalar kernel's integer sums exactly (tests compare every
// kernel set with the same reference).

#if JINDOU_AVX2
/// Runs the SIMD kernel of `format` if this file has one; false to fall back to the scalar one.
@inline(__always)
func legacyAndKRowsSIMD(_ format: BlockFormat, _ a: QuantizedActivations, weight: WeightMatrix, rows: Range<Int>,
                        y: UnsafeMutablePointer<Float>, outputStride: Int) -> Bool {
    legacyRowsSIMD(format, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
        || kQuantRowsSIMD(format, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
}
#endif
