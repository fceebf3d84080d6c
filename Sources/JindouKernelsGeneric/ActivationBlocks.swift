import CJindouSupport
#if JINDOU_AVX2
import _Builtin_intrinsics.intel
#endif
import JindouTensors
#if JINDOU_AVX2
import _Builtin_intrinsics.intel
#endif

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
// block its f32 scale, then (Q8_1) each block's f32 s, then (Q8_0, Q8_1) each block's
// Int16 Σq, or (Q8_K) each 16 values' Int16 sum. The Q8_0/Q8_1 sums are not part of
// ggml's block_q8_0; the SIMD kernels use them to multiply offset weights as unsigned
// bytes (Σ (q_w + k)·q_x − k·Σq_x) instead of sign-flipping every block.
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
    /// Q8_K: one Int16 sum per 16 values; Q8_0/Q8_1: one Int16 Σq per block of 32.
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
    /// The Int16 sums (`ActivationRow.blockSums`) of token 0, and how many per token.
    let sums16: UnsafePointer<Int16>
    let sums16PerToken: Int

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
        sums16 = (format == .q8_1 ? extra + 4 * blocks : extra).assumingMemoryBound(to: Int16.self)
        sums16PerToken = format == .q8_K ? columns / 16 : columns / format.blockSize
    }

    /// Token `t`'s activations.
    @inline(__always)
    public func row(_ t: Int) -> ActivationRow {
        let blocks = blocksPerToken
        return ActivationRow(values: values + t &* columns, scales: scales + t &* blocks,
                             sums: extra.assumingMemoryBound(to: Float.self) + t &* blocks,
                             blockSums: sums16 + t &* sums16PerToken)
    }

    static func valueBytes(tokens: Int, columns: Int) -> Int { (tokens * columns + 63) & ~63 }

    /// Bytes `encode` writes for `tokens` rows of `columns`.
    public static func byteCount(format: ActivationFormat, tokens: Int, columns: Int) -> Int {
        let blocks = tokens * (columns / format.blockSize)
        let extra = switch format {
        case .q8_0: 2 * blocks
        case .q8_1: 4 * blocks + 2 * blocks
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
            let integerSums = UnsafeMutablePointer(mutating: a.sums16)
            for b in 0..<(tokens * (columns / 32)) {
                let (d, sum) = encodeQ8_0Block(x + 32 &* b, values + 32 &* b)
                scales[b] = Float(Float16(d))
                integerSums[b] = Int16(truncatingIfNeeded: sum)
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

#if JINDOU_AVX2
// The same encodings with AVX2 intrinsics: the generic SIMD code's float → int32
// conversions are not vectorised by the compiler (a per-lane library call), which made
// quantising the activations a fifth of a small product's time. Same values bit for bit.

@inline(__always) private func floats8(_ p: UnsafePointer<Float>) -> __m256 { _mm256_loadu_ps(p) }
@inline(__always) private func magnitude8(_ v: __m256) -> __m256 { _mm256_andnot_ps(_mm256_set1_ps(-0.0), v) }

/// 32 int32 (four vectors, each in [−128, 255] after the caller's clamping) as 32 bytes in
/// order: `vpackssdw`/`vpacksswb` (signed saturation) or `vpackusdw`/`vpackuswb`, then the
/// 32-bit groups put back in order.
@inline(__always) private func packBytes(_ a: __m256i, _ b: __m256i, _ c: __m256i, _ d: __m256i, signed: Bool) -> __m256i {
    let packed = signed ? _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d))
        : _mm256_packus_epi16(_mm256_packus_epi32(a, b), _mm256_packus_epi32(c, d))
    return _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// One Q8_0 block: writes 32 int8 values, returns the unrounded d and Σq.
@inline(__always)
func encodeQ8_0Block(_ x: UnsafePointer<Float>, _ q: UnsafeMutablePointer<Int8>) -> (d: Float, sum: Int32) {
    let v0 = floats8(x), v1 = floats8(x + 8), v2 = floats8(x + 16), v3 = floats8(x + 24)
    let largest = _mm256_max_ps(_mm256_max_ps(magnitude8(v0), magnitude8(v1)), _mm256_max_ps(magnitude8(v2), magnitude8(v3)))
    let maximum = largest.max()
    let d = maximum / 127
    let inverse = _mm256_set1_ps(maximum != 0 ? 127 / maximum : 0)
    // Rounded to nearest even (the default MXCSR mode) as `_mm256_round_ps` + convert; a NaN
    // converts to INT32_MIN (nothing else can: |v · 127 / max| ≤ 127) and becomes 0.
    @inline(__always) func quantize(_ v: __m256) -> __m256i {
        let i = _mm256_cvtps_epi32(_mm256_mul_ps(v, inverse))
        return _mm256_andnot_si256(_mm256_cmpeq_epi32(i, _mm256_set1_epi32(Int32.min)), i)
    }
    let i0 = quantize(v0), i1 = quantize(v1), i2 = quantize(v2), i3 = quantize(v3)
    _mm256_storeu_si256(UnsafeMutableRawPointer(q).assumingMemoryBound(to: __m256i.self), packBytes(i0, i1, i2, i3, signed: true))
    let total = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3))
    return (d, unsafeBitCast(total, to: SIMD8<Int32>.self).wrappedSum())
}

/// One Q8_K block (`quantize_row_q8_K_ref`): writes 256 int8 values and 16 sums, returns d.
@inline(__always)
func encodeQ8_KBlock(_ x: UnsafePointer<Float>, _ q: UnsafeMutablePointer<Int8>, _ sums: UnsafeMutablePointer<Int16>) -> Float {
    // The largest magnitude (`vmaxps` returns its second operand when the first is NaN, so
    // NaNs are skipped as the scalar `a > magnitude` skips them) …
    var running = _mm256_setzero_ps()
    for i in stride(from: 0, to: 256, by: 8) { running = _mm256_max_ps(magnitude8(floats8(x + i)), running) }
    let magnitude = running.max()
    guard magnitude != 0 else {
        UnsafeMutableRawPointer(q).initializeMemory(as: UInt8.self, repeating: 0, count: 256)
        UnsafeMutableRawPointer(sums).initializeMemory(as: UInt8.self, repeating: 0, count: 32)
        return 0
    }
    // … and the first value with that magnitude, sign included.
    var maximum: Float = 0
    for j in 0..<256 where abs(x[j]) == magnitude {
        maximum = x[j]
        break
    }
    let iscale = -127 / maximum
    let scale = _mm256_set1_ps(iscale), magic = _mm256_set1_ps(12_582_912)
    // nearest_int: ties to even by adding 1.5 · 2²³ (a multiply and an add, as the scalar
    // code rounds them), min(127, ·), then the low byte.
    @inline(__always) func quantize(_ i: Int) -> __m256i {
        let shifted = _mm256_castps_si256(_mm256_add_ps(_mm256_mul_ps(scale, floats8(x + i)), magic))
        let value = _mm256_sub_epi32(_mm256_and_si256(shifted, _mm256_set1_epi32(0x007F_FFFF)), _mm256_set1_epi32(0x0040_0000))
        return _mm256_min_epi32(value, _mm256_set1_epi32(127))
    }
    for block in 0..<8 {
        let i0 = quantize(32 &* block), i1 = quantize(32 &* block &+ 8), i2 = quantize(32 &* block &+ 16), i3 = quantize(32 &* block &+ 24)
        let low = _mm256_set1_epi32(0xFF)
        _mm256_storeu_si256(UnsafeMutableRawPointer(q + 32 &* block).assumingMemoryBound(to: __m256i.self),
                            packBytes(_mm256_and_si256(i0, low), _mm256_and_si256(i1, low), _mm256_and_si256(i2, low),
                                      _mm256_and_si256(i3, low), signed: false))
        // Sums of the stored (truncated) bytes, per 16.
        @inline(__always) func byteValue(_ v: __m256i) -> __m256i { _mm256_srai_epi32(_mm256_slli_epi32(v, 24), 24) }
        let first = unsafeBitCast(_mm256_add_epi32(byteValue(i0), byteValue(i1)), to: SIMD8<Int32>.self).wrappedSum()
        let second = unsafeBitCast(_mm256_add_epi32(byteValue(i2), byteValue(i3)), to: SIMD8<Int32>.self).wrappedSum()
        sums[2 &* block] = Int16(truncatingIfNeeded: first)
        sums[2 &* block &+ 1] = Int16(truncatingIfNeeded: second)
    }
    return 1 / iscale
}
#else
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
#endif
