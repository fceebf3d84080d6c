// The hot loops, as one compiled copy per instruction set. JindouKernelsGeneric,
// JindouKernelsAVX2 and JindouKernelsAVX512 compile the same sources for different CPUs
// (Package.swift); each exposes its copy as `Kernels: KernelSet`, and JindouNumerics
// calls the best one the running CPU supports (`KernelDispatch`). Every requirement
// covers a whole row range, attention head loop or matrix, so the one indirect call per
// requirement is amortised over thousands of multiply-adds.

/// One compiled copy of the kernels.
public protocol KernelSet: SendableMetatype {
    /// "generic", "avx2" or "avx512".
    static var name: String { get }

    /// Whether block-quantised weights are multiplied in integers (the activations rounded
    /// to int8 blocks first, as ggml-cpu does) rather than widened to fp32.
    static var usesInt8Activations: Bool { get }

    /// Calls `body` with a function that computes rows `range` of `y = x · Wᵀ` for
    /// `tokens` rows of `x` (`weight.columns` wide), writing `y[t · outputStride + r]`.
    /// Per-call preparation (the int8 encoding of `x`) happens once, for every range.
    static func withRowKernel(
        _ x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix, into y: UnsafeMutablePointer<Float>, outputStride: Int,
        _ body: ((Range<Int>) -> Void) -> Void)

    /// `withRowKernel` for two matrices of one shape and format over the same `x` (an
    /// expert's gate and up projections): `x` is prepared once for both.
    static func withRowKernels(
        _ x: UnsafePointer<Float>, tokens: Int, _ first: WeightMatrix, into y1: UnsafeMutablePointer<Float>,
        _ second: WeightMatrix, into y2: UnsafeMutablePointer<Float>,
        _ body: (_ first: @escaping (Range<Int>) -> Void, _ second: @escaping (Range<Int>) -> Void) -> Void)

    /// Rows `range` of `weight` widened (or dequantised) to fp32, row-major.
    static func widenRows(_ weight: WeightMatrix, _ range: Range<Int>, into destination: UnsafeMutablePointer<Float>)

    /// One query token attending to cached positions `first..<length` (see JindouNumerics'
    /// `attendOneToken`).
    static func attendOneToken(
        query q: UnsafePointer<Float>, heads: Int, kvHeads: Int, headDimension d: Int,
        keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, rowStride: Int,
        first: Int, length: Int, scale: Float, scores: UnsafeMutablePointer<Float>,
        into out: UnsafeMutablePointer<Float>, valueDimension dv: Int, valueRowStride: Int)

    /// For each token t: `y[t · outputStride + c] = Σᵢ x[t · inputStride + i] · W[i, c]`.
    static func linearTransposed(
        _ x: UnsafePointer<Float>, tokens: Int, inputStride: Int, weight: WeightMatrix,
        into y: UnsafeMutablePointer<Float>, outputStride: Int)
}
