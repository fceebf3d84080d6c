// The hot loops, as one compiled copy per instruction set. JindouKernelsGeneric,
// JindouKernelsAVX2, JindouKernelsAVXVNNI, JindouKernelsAVX512 and JindouKernelsAVX512VNNI
// compile the same sources for different CPUs
// (Package.swift); each exposes its copy as `Kernels: KernelSet`, and JindouNumerics
// calls the best one the running CPU supports (`KernelDispatch`). Every requirement
// covers a whole row range, attention head loop or matrix, so the one indirect call per
// requirement is amortised over thousands of multiply-adds.

/// One compiled copy of the kernels.
public protocol KernelSet: SendableMetatype {
    /// "generic", "avx2", "avxvnni", "avx512" or "avx512vnni".
    static var name: String { get }

    /// Whether block-quantised weights are multiplied in integers (the activations rounded
    /// to int8 blocks first, as ggml-cpu does) rather than widened to fp32.
    static var usesInt8Activations: Bool { get }

    /// Prepares `x` (`tokens` rows, `weight.columns` wide) for `weight`'s row kernel, once
    /// per product: the int8 block encoding for quantised weights where the integer kernels
    /// are compiled in, written to the calling thread's scratch (`ScratchSlot.int8Activations`);
    /// nil when the kernel reads `x` as it is.
    static func prepare(_ x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix) -> UnsafeRawPointer?

    /// Rows `rows` of `call.y = call.x · call.weightᵀ`. Safe to run for disjoint row ranges on
    /// several threads at once (while the thread that prepared `call` waits).
    static func computeRows(_ call: RowCall, _ rows: Range<Int>)

    /// Rows `range` of `weight` widened (or dequantised) to fp32, row-major.
    static func widenRows(_ weight: WeightMatrix, _ range: Range<Int>, into destination: UnsafeMutablePointer<Float>)

    /// One query token attending to cached positions `first..<length` (see JindouNumerics'
    /// `attendOneToken`).
    static func attendOneToken(
        query q: UnsafePointer<Float>, heads: Int, kvHeads: Int, headDimension d: Int,
        keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, rowStride: Int,
        first: Int, length: Int, scale: Float, scores: UnsafeMutablePointer<Float>,
        into out: UnsafeMutablePointer<Float>, valueDimension dv: Int, valueRowStride: Int, sinks: UnsafePointer<Float>?)

    /// One token of the (gated) delta rule for one value head, in place on its state `state`
    /// (dk × dv, row-major): S ← S·f (f = `decay[0]`, or `decay[i]` for row i when
    /// `decayStride` is 1); delta = (v − Sᵀk)·β; S ← S + k ⊗ delta; `out` = Sᵀq (see
    /// JindouKernelsGeneric/DeltaRuleStep.swift).
    static func deltaRuleStep(
        state: UnsafeMutablePointer<Float>, keyDimension dk: Int, valueDimension dv: Int,
        query q: UnsafePointer<Float>, key k: UnsafePointer<Float>, value v: UnsafePointer<Float>, beta: Float,
        decay: UnsafePointer<Float>, decayStride: Int, into out: UnsafeMutablePointer<Float>)

    /// For each token t: `y[t · outputStride + c] = Σᵢ x[t · inputStride + i] · W[i, c]`.
    static func linearTransposed(
        _ x: UnsafePointer<Float>, tokens: Int, inputStride: Int, weight: WeightMatrix,
        into y: UnsafeMutablePointer<Float>, outputStride: Int)
}

/// One matrix product for `KernelSet.computeRows`: `y[t · outputStride + r] = Σ_c x[t, c] · W[r, c]`.
/// A value (pointers and the weight), so it can cross to other threads without allocation.
public struct RowCall: @unchecked Sendable {
    // @unchecked: raw pointers to the caller's buffers; `parallelApply` returns only after
    // every thread is done with them.
    public let x: UnsafePointer<Float>
    public let tokens: Int
    public let weight: WeightMatrix
    public let y: UnsafeMutablePointer<Float>
    public let outputStride: Int
    /// What `KernelSet.prepare` returned for `x` and `weight`.
    public let prepared: UnsafeRawPointer?

    @inlinable
    public init(x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix, y: UnsafeMutablePointer<Float>, outputStride: Int,
                prepared: UnsafeRawPointer?) {
        self.x = x
        self.tokens = tokens
        self.weight = weight
        self.y = y
        self.outputStride = outputStride
        self.prepared = prepared
    }
}

/// Token counts from which the grid formats (IQ1/IQ2/IQ3) decode each row once into a table
/// for all tokens (prefill); below it every token runs the one-token kernel, so a token's
/// row is bit for bit a one-token call's (decode batches, speculative verification).
public let gridTableTokens = 16
