import JindouTensors

// This module's copy of the kernels (see JindouTensors/KernelSet.swift). The same source
// files are compiled as JindouKernelsGeneric (baseline CPU), JindouKernelsAVX2 (x86-64-v3:
// AVX2, FMA, F16C; the SIMD integer-dot kernels for quantised weights), JindouKernelsAVXVNNI
// (+ AVX-VNNI), JindouKernelsAVX512 (x86-64-v4) and JindouKernelsAVX512VNNI (+ AVX512-VNNI,
// VBMI, BF16), so `Kernels` is a different compilation in each module (Package.swift).

public enum Kernels: KernelSet {
    #if JINDOU_AVX512 && JINDOU_VNNI
    public static let name = "avx512vnni"
    #elseif JINDOU_AVX512
    public static let name = "avx512"
    #elseif JINDOU_VNNI
    public static let name = "avxvnni"
    #elseif JINDOU_AVX2
    public static let name = "avx2"
    #else
    public static let name = "generic"
    #endif

    /// Every set multiplies block-quantised weights in integers over ggml's activation
    /// blocks (the generic one in scalar code), so results do not depend on the CPU.
    public static let usesInt8Activations = true

    public static func prepare(_ x: UnsafePointer<Float>, tokens: Int, weight: WeightMatrix) -> UnsafeRawPointer? {
        guard let format = weight.blockFormat, !weight.floatActivations else { return nil }
        return QuantizedActivations.encode(x, tokens: tokens, columns: weight.columns, format: format.activationFormat)
    }

    public static func computeRows(_ call: RowCall, _ rows: Range<Int>) {
        let weight = call.weight
        if weight.floatActivations {
            floatActivationRows(call, rows)
            return
        }
        if let format = weight.blockFormat {
            let a = QuantizedActivations(call.prepared!, format: format.activationFormat, tokens: call.tokens, columns: weight.columns)
            #if JINDOU_AVX2
            // The instruction-set versions (legacy/K formats; IQ/TQ/MXFP4), where there is one.
            if legacyAndKRowsSIMD(format, a, weight: weight, rows: rows, y: call.y, outputStride: call.outputStride)
                || gridRowsSIMD(format, a, weight: weight, rows: rows, y: call.y, outputStride: call.outputStride) {
                return
            }
            #endif
            scalarBlockRows(format, a, weight: weight, rows: rows, y: call.y, outputStride: call.outputStride)
            return
        }
        denseRows(call.x, tokens: call.tokens, weight: weight, rows: rows, into: call.y, outputStride: call.outputStride)
    }

    public static func widenRows(_ weight: WeightMatrix, _ range: Range<Int>, into destination: UnsafeMutablePointer<Float>) {
        widenWeightRows(weight, range, into: destination)
    }

    public static func attendOneToken(
        query q: UnsafePointer<Float>, heads: Int, kvHeads: Int, headDimension d: Int,
        keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, rowStride: Int,
        first: Int, length: Int, scale: Float, scores: UnsafeMutablePointer<Float>,
        into out: UnsafeMutablePointer<Float>, valueDimension dv: Int, valueRowStride: Int, sinks: UnsafePointer<Float>?
    ) {
        attention(query: q, heads: heads, kvHeads: kvHeads, headDimension: d, keys: k, values: v, rowStride: rowStride,
                  first: first, length: length, scale: scale, scores: scores, into: out, valueDimension: dv,
                  valueRowStride: valueRowStride, sinks: sinks)
    }

    public static func deltaRuleStep(
        state: UnsafeMutablePointer<Float>, keyDimension dk: Int, valueDimension dv: Int,
        query q: UnsafePointer<Float>, key k: UnsafePointer<Float>, value v: UnsafePointer<Float>, beta: Float,
        decay: UnsafePointer<Float>, decayStride: Int, into out: UnsafeMutablePointer<Float>
    ) {
        deltaRule(state: state, keyDimension: dk, valueDimension: dv, query: q, key: k, value: v, beta: beta,
                  decay: decay, decayStride: decayStride, into: out)
    }

    public static func linearTransposed(
        _ x: UnsafePointer<Float>, tokens: Int, inputStride: Int, weight: WeightMatrix,
        into y: UnsafeMutablePointer<Float>, outputStride: Int
    ) {
        transposedRows(x, tokens: tokens, inputStride: inputStride, weight: weight, into: y, outputStride: outputStride)
    }
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
