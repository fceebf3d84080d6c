// SIMD kernels of the ternary formats TQ1_0 and TQ2_0 over Q8_K activations (ggml-cpu's
// `ggml_vec_dot_tq1_0_q8_K`/`_tq2_0_q8_K`, arch/x86/quants.c, whose arithmetic this is):
// the stored digits q ∈ {0, 1, 2} (TQ2_0: 2-bit fields, 3 included) are unsigned bytes, so
// `vpmaddubsw` takes them directly; w = q − 1, and the −1 comes back out as the sum of the
// activations' 16-value sums. Per super-block the products stay in int16 lanes (at most
// 8 · 2 · 3 · 127 per lane) until one `vpmaddwd` with ones.
//
// Decoding is a few shifts per 32 weights (TQ1_0: base-3 digits by multiplying by 3^l in
// bytes and taking the top bits of ·3), so several tokens simply run the one-token kernel
// each: a decoded table would cost as much to read back as to decode again.
//
// Bytes read per row: columns × 54/256 (TQ1_0) or 66/256 (TQ2_0).

#if JINDOU_AVX2
import _Builtin_intrinsics.intel
import JindouTensors

enum TernaryKernels {
    /// Bytes · 3 (mod 256).
    @inline(__always)
    static func times3(_ v: __m256i) -> __m256i { _mm256_add_epi8(v, _mm256_add_epi8(v, v)) }

    /// Bytes · 9 (mod 256): (v << 3) per byte, plus v.
    @inline(__always)
    static func times9(_ v: __m256i) -> __m256i {
        _mm256_add_epi8(_mm256_and_si256(_mm256_slli_epi16(v, 3), _mm256_set1_epi8(-8)), v)
    }

    @inline(__always)
    static func times3(_ v: __m128i) -> __m128i { _mm_add_epi8(v, _mm_add_epi8(v, v)) }

    @inline(__always)
    static func times9(_ v: __m128i) -> __m128i { _mm_add_epi8(_mm_and_si128(_mm_slli_epi16(v, 3), _mm_set1_epi8(-8)), v) }

    /// The top base-3 digit of each byte, (3 · v) >> 8, as ggml computes it with averages:
    /// x = v − 1 (saturating), ((x + ((x + 1) >> 1) + 1) >> 1) >> 6 — equal for all 256 bytes.
    @inline(__always)
    static func topDigits(_ v: __m256i) -> __m256i {
        let x = _mm256_subs_epu8(v, _mm256_set1_epi8(1))
        let average = _mm256_avg_epu8(x, _mm256_avg_epu8(x, _mm256_setzero_si256()))
        return _mm256_and_si256(_mm256_srli_epi16(average, 6), _mm256_set1_epi8(3))
    }

    /// `vpmaddubsw` of `u` (unsigned) and 32 activations at `q`.
    @inline(__always)
    static func products(_ u: __m256i, _ q: UnsafeRawPointer) -> __m256i { _mm256_maddubs_epi16(u, loadBytes32(q)) }

    /// The int32 lanes of a super-block's int16 sums minus its activation sums (w = q − 1).
    @inline(__always)
    static func finish(_ sums: __m256i, _ x: ActivationRow, _ i: Int) -> __m256i {
        let bsums = loadBytes32(UnsafeRawPointer(x.blockSums + 16 &* i))
        return _mm256_madd_epi16(_mm256_sub_epi16(sums, bsums), _mm256_set1_epi16(1))
    }

    /// TQ1_0: block = 48 bytes of five base-3 digits each (weights 32l + m from bytes 0…31,
    /// 160 + 16l + m from 32…47), 4 bytes of four digits (weights 240 + 4l + j), f16 d.
    @inline(__always)
    static func tq1_0Dot(_ row: UnsafeRawPointer, _ x: ActivationRow, superBlocks: Int) -> Float {
        var acc = _mm256_setzero_ps()
        for i in 0..<superBlocks {
            let p = row + 54 &* i, q8 = UnsafeRawPointer(x.values + 256 &* i)
            let a0 = loadBytes32(p), a1 = times3(a0), a2 = times9(a0), a3 = times9(a1), a4 = times9(a2)
            var s = _mm256_add_epi16(products(topDigits(a0), q8), products(topDigits(a1), q8 + 32))
            s = _mm256_add_epi16(s, _mm256_add_epi16(products(topDigits(a2), q8 + 64), products(topDigits(a3), q8 + 96)))
            s = _mm256_add_epi16(s, products(topDigits(a4), q8 + 128))
            // Bytes 32…47 (l = 0…4) and the four digits of bytes 48…51 (l = 0…3).
            let b0 = _mm_loadu_si128((p + 32).assumingMemoryBound(to: __m128i.self))
            let b1 = times3(b0), b2 = times9(b0), b3 = times9(b1), b4 = times9(b2)
            let qh = unsafeBitCast(SIMD4<UInt32>(repeating: p.loadUnaligned(fromByteOffset: 48, as: UInt32.self)), to: SIMD16<UInt8>.self)
            let b5 = unsafeBitCast(qh &* SIMD16<UInt8>(1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27), to: __m128i.self)
            let b01 = _mm256_set_m128i(b1, b0), b23 = _mm256_set_m128i(b3, b2), b45 = _mm256_set_m128i(b5, b4)
            s = _mm256_add_epi16(s, products(topDigits(b01), q8 + 160))
            s = _mm256_add_epi16(s, _mm256_add_epi16(products(topDigits(b23), q8 + 192), products(topDigits(b45), q8 + 224)))
            let d = Float(halfBits: p.loadUnaligned(fromByteOffset: 52, as: UInt16.self)) * x.scales[i]
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(finish(s, x, i)), _mm256_set1_ps(d), acc)
        }
        return sumLanes(acc)
    }

    /// TQ2_0: block = 64 bytes of four 2-bit fields (weights 128h + 32l + k from byte 32h + k,
    /// bits 2l…2l + 1), f16 d.
    @inline(__always)
    static func tq2_0Dot(_ row: UnsafeRawPointer, _ x: ActivationRow, superBlocks: Int) -> Float {
        var acc = _mm256_setzero_ps()
        let three = _mm256_set1_epi8(3)
        for i in 0..<superBlocks {
            let p = row + 66 &* i, q8 = UnsafeRawPointer(x.values + 256 &* i)
            @inline(__always) func half(_ h: Int) -> __m256i {
                let v = loadBytes32(p + 32 &* h), q = q8 + 128 &* h
                let s0 = _mm256_add_epi16(products(_mm256_and_si256(v, three), q),
                                          products(_mm256_and_si256(_mm256_srli_epi16(v, 2), three), q + 32))
                let s1 = _mm256_add_epi16(products(_mm256_and_si256(_mm256_srli_epi16(v, 4), three), q + 64),
                                          products(_mm256_and_si256(_mm256_srli_epi16(v, 6), three), q + 96))
                return _mm256_add_epi16(s0, s1)
            }
            let d = Float(halfBits: p.loadUnaligned(fromByteOffset: 64, as: UInt16.self)) * x.scales[i]
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(finish(_mm256_add_epi16(half(0), half(1)), x, i)), _mm256_set1_ps(d), acc)
        }
        return sumLanes(acc)
    }
}

/// Rows `rows` of `y = x · Wᵀ` for TQ1_0 (`ternary1`) or TQ2_0 weights: the one-token
/// kernel for every token.
@inline(__always)
func ternaryRows(_ a: QuantizedActivations, ternary1: Bool, weight: WeightMatrix, rows: Range<Int>,
                 y: UnsafeMutablePointer<Float>, outputStride: Int) {
    let superBlocks = weight.columns / 256
    for r in rows {
        let row = weight.rowPointer(r)
        for t in 0..<a.tokens {
            let x = a.row(t)
            y[t &* outputStride &+ r] = ternary1 ? TernaryKernels.tq1_0Dot(row, x, superBlocks: superBlocks)
                : TernaryKernels.tq2_0Dot(row, x, superBlocks: superBlocks)
        }
    }
}
#endif
