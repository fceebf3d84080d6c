import CJindouSupport
#if JINDOU_AVX2
import _Builtin_intrinsics.intel
#endif
import JindouTensors

// Activations rounded to ggml's activation block formats once per product, so block-
// quantised weights are multiplied in integers exactly as ggml-cpu multiplies them
// (`type_traits_cpu[type].vec_dot_type`; ggml-cpu/arch/x86/quants.c):
//   Q8_0: per 32 values, d = max|x| / 127 stored as f16, q = x · (127 / max|x|) rounded
//         to nearest even (`quantize_row_q8_0`'s AVX path: `_mm256_round_ps` nearest);
//   Q8_1: the same, plus s = f16(d · Σq) (for the formats with a min, Q4_1/Q5_1);
//   Q8_K: per 256 values, the value of largest magnitude m, iscale = −127 / m,
//         q = min(127, nearest_int(iscale · x)), d = 1 / iscale (f32), and the sums of
//         each 16 q's (`quantize_row_q8_K_ref`, which x86 uses).
// The same values as llama.cpp's, so Jindou's logits on a GGUF file equal llama.cpp's up
// to the order of float additions. Every kernel set encodes the same way (the generic
// one in scalar code), so results do not depend on the CPU.
//
// Layout (in the calling thread's scratch, `ScratchSlot.int8Activations`): the int8
// values of every token (tokens × columns, padded to a cache line), then per token and
// block its f32 scale, then (Q8_1) each block's f32 s, or (Q8_K) each 16 values' Int16 sum.
// Bytes: ~1.1 per activation; it stays in L1/L2 while the weight rows stream past it.

/// One token's activations in an activation block format.
@frozen
public struct ActivationRow {
    /// The int8 values (`columns` of them).
    public let values: UnsafePointer<Int8>
    /// One f32 scale per block (the f16 `d` widened for Q8_0/Q8_1).
    public let scales: UnsafePointer<Float>
    /// Q8_1: one f32 `s` per block (the f16 widened).
    public let sums: UnsafePointer<Float>
    /// Q8_K: one Int16 sum per 16 values.
    public let blockSums: UnsafePointer<Int16>
}

/// Every token's activations in one activation block format (see the file comment).
@frozen
public struct QuantizedActivations {
    public let format: ActivationFormat
    public let tokens: Int
    public let columns: Int
    let values: UnsafePointer<Int8>
    let scales: UnsafePointer<Float>
    let extra: UnsafeRawPointer

    var blocksPerToken: Int { columns / format.blockSize }

    /// The encoding `encode` wrote at `base`.
    public init(_ base: UnsafeRawPointer, format: ActivationFormat, tokens: Int, columns: Int) {
        self.format = format
        self.tokens = tokens
        self.columns = columns
        values = base.assumingMemoryBound(to: Int8.self)
        let blocks = tokens * (columns / format.blockSize)
        let scaleStart = base + Self.valueBytes(tokens: tokens, columns: columns)
        scales = scaleStart.assumingMemoryBound(to: Float.self)
        extra = scaleStart + 4 * blocks
    }

    /// Token `t`'s activations.
    @inline(__always)
    public func row(_ t: Int) -> ActivationRow {
        let blocks = blocksPerToken
        return ActivationRow(values: values + t &* columns, scales: scales + t &* blocks,
                             sums: extra.assumingMemoryBound(to: Float.self) + t &* blocks,
                             blockSums: extra.assumingMemoryBound(to: Int16.self) + t &* (columns / 16))
    }

    static func valueBytes(tokens: Int, columns: Int) -> Int { (tokens * columns + 63) & ~63 }

    /// Bytes `encode` writes for `tokens` rows of `columns`.
    public static func byteCount(format: ActivationFormat, tokens: Int, columns: Int) -> Int {
        let blocks = tokens * (columns / format.blockSize)
        let extra = switch format {
        case .q8_0: 0
        case .q8_1: 4 * blocks
        case .q8_K: 2 * tokens * (columns / 16)
        }
        return valueBytes(tokens: tokens, columns: columns) + 4 * blocks + extra
    }

    /// Quantises `tokens` rows of `columns` floats (a whole number of `format` blocks) into
    /// the calling thread's scratch and returns where (read it back with `init`).
    public static func encode(_ x: UnsafePointer<Float>, tokens: Int, columns: Int, format: ActivationFormat) -> UnsafeRawPointer {
        precondition(columns % format.blockSize == 0, "activations of \(columns) columns are not whole \(format.rawValue) blocks")
        let bytes = byteCount(format: format, tokens: tokens, columns: columns)
        let buffer = UnsafeMutableRawPointer(threadScratch(.int8Activations, UInt8.self, count: bytes))
        let a = QuantizedActivations(UnsafeRawPointer(buffer), format: format, tokens: tokens, columns: columns)
        let values = UnsafeMutablePointer(mutating: a.values)
        let scales = UnsafeMutablePointer(mutating: a.scales)
        switch format {
        case .q8_0, .q8_1:
            let sums = UnsafeMutableRawPointer(mutating: a.extra).bindMemory(to: Float.self, capacity: tokens * a.blocksPerToken)
            for b in 0..<(tokens * (columns / 32)) {
                let (d, sum) = encodeQ8_0Block(x + 32 &* b, values + 32 &* b)
                scales[b] = Float(Float16(d))
                if format == .q8_1 { sums[b] = Float(Float16(d * Float(sum))) }
            }
        case .q8_K:
            let sums = UnsafeMutableRawPointer(mutating: a.extra).bindMemory(to: Int16.self, capacity: tokens * columns / 16)
            for b in 0..<(tokens * (columns / 256)) {
                scales[b] = encodeQ8_KBlock(x + 256 &* b, values + 256 &* b, sums + 16 &* b)
            }
        }
        return UnsafeRawPointer(buffer)
    }
}

/// One Q8_0 block: writes 32 int8 values, returns the unrounded d and Σq.
@inline(__always)
func encodeQ8_0Block(_ x: UnsafePointer<Float>, _ q: UnsafeMutablePointer<Int8>) -> (d: Float, sum: Int32) {
    #if JINDOU_AVX2
    let v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24)
    let signBit = _mm256_set1_ps(-0.0)
    let m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(signBit, v0), _mm256_andnot_ps(signBit, v1)),
                          _mm256_max_ps(_mm256_andnot_ps(signBit, v2), _mm256_andnot_ps(signBit, v3)))
    let maximum = m.max()
    let d = maximum / 127
    let inverse: Float = maximum != 0 ? 127 / maximum : 0
    let s = _mm256_set1_ps(inverse)
    // vcvtps2dq rounds to nearest even; a NaN becomes 0x80000000, then 0 below.
    @inline(__always) func convert(_ v: __m256) -> __m256i {
        let r = _mm256_mul_ps(v, s)
        let i = _mm256_cvtps_epi32(r)
        return _mm256_andnot_si256(_mm256_cmpeq_epi32(i, _mm256_set1_epi32(Int32.min)), i)
    }
    let i0 = convert(v0), i1 = convert(v1), i2 = convert(v2), i3 = convert(v3)
    let packed = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3))
    let ordered = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    _mm256_storeu_si256(UnsafeMutableRawPointer(q).assumingMemoryBound(to: __m256i.self), ordered)
    let total = unsafeBitCast(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)), to: SIMD8<Int32>.self).wrappedSum()
    return (d, total)
    #else
    let v0 = UnsafeRawPointer(x).loadUnaligned(as: SIMD16<Float>.self)
    let v1 = UnsafeRawPointer(x + 16).loadUnaligned(as: SIMD16<Float>.self)
    let maximum = max(v0.replacing(with: -v0, where: v0 .< 0).max(), v1.replacing(with: -v1, where: v1 .< 0).max())
    let d = maximum / 127
    let inverse: Float = maximum != 0 ? 127 / maximum : 0
    var r0 = (v0 * inverse).rounded(.toNearestOrEven), r1 = (v1 * inverse).rounded(.toNearestOrEven)
    // A NaN activation (a diverged model) must not trap the conversion; it becomes 0.
    r0.replace(with: 0, where: .!(r0 .== r0))
    r1.replace(with: 0, where: .!(r1 .== r1))
    let i0 = SIMD16<Int32>(r0), i1 = SIMD16<Int32>(r1)
    UnsafeMutableRawPointer(q).storeBytes(of: SIMD16<Int8>(clamping: i0), as: SIMD16<Int8>.self)
    UnsafeMutableRawPointer(q + 16).storeBytes(of: SIMD16<Int8>(clamping: i1), as: SIMD16<Int8>.self)
    return (d, (i0 &+ i1).wrappedSum())
    #endif
}

/// One Q8_K block (`quantize_row_q8_K_ref`): writes 256 int8 values and 16 sums, returns d.
@inline(__always)
func encodeQ8_KBlock(_ x: UnsafePointer<Float>, _ q: UnsafeMutablePointer<Int8>, _ sums: UnsafeMutablePointer<Int16>) -> Float {
    var maximum: Float = 0, magnitude: Float = 0
    for j in 0..<256 {
        let a = abs(x[j])
        if a > magnitude {
            magnitude = a
            maximum = x[j]
        }
    }
    guard magnitude != 0 else {
        for j in 0..<256 { q[j] = 0 }
        for j in 0..<16 { sums[j] = 0 }
        return 0
    }
    let iscale = -127 / maximum
    for j in 0..<256 {
        // nearest_int: ties to even by adding 1.5 · 2²³.
        let shifted = iscale * x[j] + 12_582_912
        q[j] = Int8(truncatingIfNeeded: min(127, Int32(bitPattern: shifted.bitPattern & 0x007F_FFFF) - 0x0040_0000))
    }
    for j in 0..<16 {
        var sum: Int32 = 0
        for i in 0..<16 { sum &+= Int32(q[16 &* j &+ i]) }
        sums[j] = Int16(truncatingIfNeeded: sum)
    }
    return 1 / iscale
}
