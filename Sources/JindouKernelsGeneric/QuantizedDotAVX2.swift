// Integer-dot kernels for Q8_0 and Q4_K weights on AVX2 (as llama.cpp's ggml-cpu does),
// over the activations ActivationBlocks.swift rounded to Q8_0 (Q8_0 weights) or Q8_K
// (Q4_K): each weight block's dot product is computed in integers — `vpmaddubsw` (u8 × s8
// pairs → s16) and `vpmaddwd` (pairs → s32) — converted to fp32 and scaled by the product
// of the two block scales. ~6 instructions per 32 weights instead of widening every weight
// to fp32, which is what keeps a quantised GEMV near the memory roofline. The integer sums
// are exactly the scalar kernels' (BlockDots.swift); only the float summation order differs.
//
// Bytes read per call: rows × rowBytes of weights (Q8_0 1.0625, Q4_K 0.5625 bytes per
// weight); the activations' int8 copy (tokens × columns bytes) stays in L1/L2.
//
// Compiled into the AVX2 and AVX-512 kernel modules (Package.swift defines JINDOU_AVX2
// there); the generic module runs the scalar kernels.

#if JINDOU_AVX2
import _Builtin_intrinsics.intel
import CJindouSupport
import JindouTensors

@inline(__always)
private func load256(_ pointer: UnsafeRawPointer) -> __m256i {
    _mm256_loadu_si256(pointer.assumingMemoryBound(to: __m256i.self))
}

@inline(__always)
private func horizontalSum(_ v: __m256) -> Float {
    unsafeBitCast(v, to: SIMD8<Float>.self).sum()
}

/// One Q8_0 block's integer dot product as 8 int32 partial sums:
/// |w| · (x · sign w) = w · x, with |w| unsigned for `vpmaddubsw`.
@inline(__always)
private func q8_0BlockDot(_ w: __m256i, _ x: __m256i, _ ones: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)), ones)
}

/// Lane i of the result = the sum of all lanes of `s[i]`: eight blocks' totals in one
/// vector, so their scales are applied with one multiply-add.
@inline(__always)
private func laneTotals(_ s0: __m256i, _ s1: __m256i, _ s2: __m256i, _ s3: __m256i,
                        _ s4: __m256i, _ s5: __m256i, _ s6: __m256i, _ s7: __m256i) -> __m256i {
    let a = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3))
    let c = _mm256_hadd_epi32(_mm256_hadd_epi32(s4, s5), _mm256_hadd_epi32(s6, s7))
    // a = [b0..b3 low halves | b0..b3 high halves], c likewise for b4..b7.
    let va = unsafeBitCast(a, to: SIMD8<Int32>.self), vc = unsafeBitCast(c, to: SIMD8<Int32>.self)
    return unsafeBitCast(SIMD8(lowHalf: va.lowHalf, highHalf: vc.lowHalf) &+ SIMD8(lowHalf: va.highHalf, highHalf: vc.highHalf),
                         to: __m256i.self)
}

/// Bytes ahead of the current block that the Q8_0 kernel asks the prefetcher for: about
/// one row of 2048 columns (2176 bytes), far enough to cover the memory latency at full
/// bandwidth.
private let q8_0PrefetchDistance = 2048

/// Σ w·x over one Q8_0 row and one token's int8 activations. Eight blocks (272 bytes)
/// per step: eight integer dot products reduced to one vector (lane = block), then one
/// multiply-add with the eight blocks' combined scales (f16 weight scale × activation
/// scale). ~9 instructions per block instead of ~14 with a broadcast scale per block,
/// and explicit prefetches keep enough cache lines in flight for one core to stream.
@inline(__always)
private func q8_0RowDot(_ row: UnsafeRawPointer, _ xq: UnsafeRawPointer, _ dx: UnsafePointer<Float>,
                        blocks: Int, _ ones: __m256i) -> Float {
    var acc = _mm256_setzero_ps()
    var b = 0
    while b &+ 8 <= blocks {
        let p = row + b &* 34, xb = xq + b &* 32
        let ahead = p + q8_0PrefetchDistance
        jindou_prefetch(ahead); jindou_prefetch(ahead + 64); jindou_prefetch(ahead + 128)
        jindou_prefetch(ahead + 192); jindou_prefetch(ahead + 256)
        let s0 = q8_0BlockDot(load256(p + 2), load256(xb), ones)
        let s1 = q8_0BlockDot(load256(p + 36), load256(xb + 32), ones)
        let s2 = q8_0BlockDot(load256(p + 70), load256(xb + 64), ones)
        let s3 = q8_0BlockDot(load256(p + 104), load256(xb + 96), ones)
        let s4 = q8_0BlockDot(load256(p + 138), load256(xb + 128), ones)
        let s5 = q8_0BlockDot(load256(p + 172), load256(xb + 160), ones)
        let s6 = q8_0BlockDot(load256(p + 206), load256(xb + 192), ones)
        let s7 = q8_0BlockDot(load256(p + 240), load256(xb + 224), ones)
        let totals = laneTotals(s0, s1, s2, s3, s4, s5, s6, s7)
        let halves = SIMD8<UInt16>(
            p.loadUnaligned(as: UInt16.self), p.loadUnaligned(fromByteOffset: 34, as: UInt16.self),
            p.loadUnaligned(fromByteOffset: 68, as: UInt16.self), p.loadUnaligned(fromByteOffset: 102, as: UInt16.self),
            p.loadUnaligned(fromByteOffset: 136, as: UInt16.self), p.loadUnaligned(fromByteOffset: 170, as: UInt16.self),
            p.loadUnaligned(fromByteOffset: 204, as: UInt16.self), p.loadUnaligned(fromByteOffset: 238, as: UInt16.self))
        let scales = _mm256_mul_ps(_mm256_cvtph_ps(unsafeBitCast(halves, to: __m128i.self)),
                                   _mm256_loadu_ps(dx + b))
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(totals), scales, acc)
        b &+= 8
    }
    while b < blocks {
        let p = row + b &* 34
        let s = q8_0BlockDot(load256(p + 2), load256(xq + b &* 32), ones)
        let d = Float(halfBits: p.loadUnaligned(as: UInt16.self)) * dx[b]
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d), acc)
        b &+= 1
    }
    return horizontalSum(acc)
}

func q8_0RowKernelAVX2(_ a: QuantizedActivations, weight: WeightMatrix, rows: Range<Int>,
                       y: UnsafeMutablePointer<Float>, outputStride: Int) {
    let blocks = weight.columns / 32
    let ones = _mm256_set1_epi16(1)
    for r in rows {
        let row = weight.rowPointer(r)
        // Later tokens read the row from L1.
        for t in 0..<a.tokens {
            let x = a.row(t)
            y[t &* outputStride &+ r] = q8_0RowDot(row, UnsafeRawPointer(x.values), x.scales, blocks: blocks, ones)
        }
    }
}

/// Q4_K's twelve packed scale bytes as eight 6-bit scales and eight 6-bit mins, as int32
/// lanes (ggml's `kmask` shuffle: the same values as `Q4_K.scaleMin(0…7)`).
@inline(__always)
private func q4_KScalesAndMinsInt(_ packed: UnsafeRawPointer) -> (scales: __m256i, mins: __m256i) {
    let u0 = packed.loadUnaligned(as: UInt32.self)
    let u1 = packed.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
    let u2 = packed.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
    let low6: UInt32 = 0x3F3F_3F3F, low4: UInt32 = 0x0F0F_0F0F, low2: UInt32 = 0x0303_0303
    let scales = UInt64(u0 & low6) | UInt64((u2 & low4) | (((u0 >> 6) & low2) << 4)) << 32
    let mins = UInt64(u1 & low6) | UInt64(((u2 >> 4) & low4) | (((u1 >> 6) & low2) << 4)) << 32
    @inline(__always) func lanes(_ bytes: UInt64) -> __m256i {
        _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(Int64(bitPattern: bytes)))
    }
    return (lanes(scales), lanes(mins))
}

/// Bytes ahead of the current super-block the Q4_K kernel prefetches.
private let q4_KPrefetchDistance = 1152

/// Σ w·x over one Q4_K row and one token's Q8_K activations. Per super-block (256 weights,
/// 144 bytes): eight sub-block integer dot products (nibbles are unsigned, so
/// `vpmaddubsw` takes them directly) reduced to one vector (lane = sub-block) and scaled by
/// the eight 6-bit scales, one multiply-add with d·(activation d); the `min` term in
/// integers from the activations' 16-value sums (`vpmaddwd` of the sums with the mins).
@inline(__always)
private func q4_KRowDot(_ row: UnsafeRawPointer, _ x: ActivationRow, superBlocks: Int, _ ones: __m256i, _ lowNibbles: __m256i) -> Float {
    var acc = _mm256_setzero_ps(), minimums = _mm256_setzero_ps()
    let xq = UnsafeRawPointer(x.values)
    for s in 0..<superBlocks {
        let block = row + s &* Q4_K.bytesPerBlock
        let ahead = block + q4_KPrefetchDistance
        jindou_prefetch(ahead); jindou_prefetch(ahead + 64); jindou_prefetch(ahead + 128)
        let quants = block + 16, xb = xq + s &* 256
        @inline(__always) func pair(_ group: Int) -> (__m256i, __m256i) {
            let bytes = load256(quants + 32 &* group)
            let low = _mm256_and_si256(bytes, lowNibbles)
            let high = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), lowNibbles)
            return (_mm256_madd_epi16(_mm256_maddubs_epi16(low, load256(xb + 64 &* group)), ones),
                    _mm256_madd_epi16(_mm256_maddubs_epi16(high, load256(xb + (64 &* group &+ 32))), ones))
        }
        let (s0, s1) = pair(0), (s2, s3) = pair(1), (s4, s5) = pair(2), (s6, s7) = pair(3)
        let (scales, mins) = q4_KScalesAndMinsInt(block + 4)
        let totals = _mm256_mullo_epi32(laneTotals(s0, s1, s2, s3, s4, s5, s6, s7), scales)
        let dx = x.scales[s]
        let d = Float(halfBits: block.loadUnaligned(as: UInt16.self)) * dx
        let dmin = Float(halfBits: block.loadUnaligned(fromByteOffset: 2, as: UInt16.self)) * dx
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(totals), _mm256_set1_ps(d), acc)
        // (bsums[2k] + bsums[2k+1]) · m_k for the eight sub-blocks k.
        let sums = _mm256_loadu_si256(UnsafeRawPointer(x.blockSums + 16 &* s).assumingMemoryBound(to: __m256i.self))
        let pairedMins = _mm256_or_si256(mins, _mm256_slli_epi32(mins, 16))
        minimums = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(sums, pairedMins)), _mm256_set1_ps(dmin), minimums)
    }
    return horizontalSum(acc) - horizontalSum(minimums)
}

func q4_KRowKernelAVX2(_ a: QuantizedActivations, weight: WeightMatrix, rows: Range<Int>,
                       y: UnsafeMutablePointer<Float>, outputStride: Int) {
    let superBlocks = weight.columns / Q4_K.blockSize
    let ones = _mm256_set1_epi16(1)
    let lowNibbles = _mm256_set1_epi8(0x0F)
    for r in rows {
        let row = weight.rowPointer(r)
        for t in 0..<a.tokens {
            y[t &* outputStride &+ r] = q4_KRowDot(row, a.row(t), superBlocks: superBlocks, ones, lowNibbles)
        }
    }
}
#endif
