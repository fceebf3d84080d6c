import JindouTensors

// This module's copy of the kernels (see JindouTensors/KernelSet.swift). The same source
// files are compiled as JindouKernelsGeneric (baseline CPU), JindouKernelsAVX2 (haswell:
// AVX2, FMA, F16C; the integer-dot kernels for quantised weights) and JindouKernelsAVX512
// (skylake-avx512), so `Kernels` is a different compilation in each module.

public enum Kernels: KernelSet {
    #if JINDOU_AVX512
    public static let name = "avx512"
    #elseif JINDOU_AVX2
    public static let name = "avx2"
    #else
    public static let name = "generic"
    #endif

    #if JINDOU_AVX2
    public static let usesInt8Activations = true
    #else
    public static let usesInt8Activations = false
    #endif

    public static func withRowKernel(
        _ x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix, into y: UnsafeMutablePointer<Float>, outputStride: Int,
        _ body: ((Range<Int>) -> Void) -> Void
    ) {
        withActivations(x, tokens: tokens, weight: weight) { activations in
            body(rowKernel(for: weight, activations, x, tokens: tokens, into: y, outputStride: outputStride))
        }
    }

    public static func withRowKernels(
        _ x: UnsafePointer<Float>, tokens: Int, _ first: WeightMatrix, into y1: UnsafeMutablePointer<Float>,
        _ second: WeightMatrix, into y2: UnsafeMutablePointer<Float>,
        _ body: (_ first: @escaping (Range<Int>) -> Void, _ second: @escaping (Range<Int>) -> Void) -> Void
    ) {
        precondition(first.columns == second.columns && first.blockFormat == second.blockFormat,
                     "withRowKernels: the matrices need one width and one format")
        withActivations(x, tokens: tokens, weight: first) { activations in
            body(rowKernel(for: first, activations, x, tokens: tokens, into: y1, outputStride: first.rows),
                 rowKernel(for: second, activations, x, tokens: tokens, into: y2, outputStride: second.rows))
        }
    }

    public static func widenRows(_ weight: WeightMatrix, _ range: Range<Int>, into destination: UnsafeMutablePointer<Float>) {
        widenWeightRows(weight, range, into: destination)
    }

    public static func attendOneToken(
        query q: UnsafePointer<Float>, heads: Int, kvHeads: Int, headDimension d: Int,
        keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, rowStride: Int,
        first: Int, length: Int, scale: Float, scores: UnsafeMutablePointer<Float>,
        into out: UnsafeMutablePointer<Float>, valueDimension dv: Int, valueRowStride: Int
    ) {
        attention(query: q, heads: heads, kvHeads: kvHeads, headDimension: d, keys: k, values: v, rowStride: rowStride,
                  first: first, length: length, scale: scale, scores: scores, into: out, valueDimension: dv,
                  valueRowStride: valueRowStride)
    }

    public static func linearTransposed(
        _ x: UnsafePointer<Float>, tokens: Int, inputStride: Int, weight: WeightMatrix,
        into y: UnsafeMutablePointer<Float>, outputStride: Int
    ) {
        transposedRows(x, tokens: tokens, inputStride: inputStride, weight: weight, into: y, outputStride: outputStride)
    }
}

#if JINDOU_AVX2
typealias PreparedActivations = Int8Activations?
#else
typealias PreparedActivations = Void?
#endif

/// The activations' int8 encoding when `weight` is block-quantised and the integer kernels
/// are compiled in; nil otherwise.
private func withActivations(
    _ x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix, _ body: (PreparedActivations) -> Void
) {
    #if JINDOU_AVX2
    if weight.blockFormat != nil {
        Int8Activations.with(x, tokens: tokens, columns: weight.columns) { body($0) }
        return
    }
    #endif
    body(nil)
}

/// The row kernel for `weight`'s format (`activations` from `withActivations`).
private func rowKernel(
    for weight: WeightMatrix, _ activations: PreparedActivations, _ x: UnsafePointer<Float>, tokens: Int,
    into y: UnsafeMutablePointer<Float>, outputStride: Int
) -> (Range<Int>) -> Void {
    if let format = weight.blockFormat {
        #if JINDOU_AVX2
        let a = activations!
        switch format {
        case .q8_0: return { q8_0RowKernelAVX2(a, tokens: tokens, weight: weight, rows: $0, y: y, outputStride: outputStride) }
        case .q4_K: return { q4_KRowKernelAVX2(a, tokens: tokens, weight: weight, rows: $0, y: y, outputStride: outputStride) }
        }
        #else
        switch format {
        case .q8_0: return { q8_0RowKernel(x, tokens: tokens, weight: weight, rows: $0, y: y, outputStride: outputStride) }
        case .q4_K: return { q4_KRowKernel(x, tokens: tokens, weight: weight, rows: $0, y: y, outputStride: outputStride) }
        }
        #endif
    }
    return { denseRows(x, tokens: tokens, weight: weight, rows: $0, into: y, outputStride: outputStride) }
}


extension SIMD where Scalar == Float {
    /// self + a·b: one fused multiply-add instruction where the CPU has one (the AVX2 and
    /// AVX-512 modules, ARM64); a multiply and an add in the baseline x86-64 module, where
    /// an exact fused multiply-add would be a software `fmaf` call per lane (~15x slower).
    @inline(__always)
    func multiplyAdding(_ a: Self, _ b: Self) -> Self {
        #if JINDOU_AVX2 || arch(arm64)
        addingProduct(a, b)
        #else
        self + a * b
        #endif
    }
}
