// SIMD kernels of MXFP4 (gpt-oss's expert format; `block_mxfp4`: an E8M0 exponent and 32
// 4-bit `kvalues_mxfp4` indices) over Q8_0 activations, as ggml-cpu's
// `ggml_vec_dot_mxfp4_q8_0` computes it: per 32 weights the integer dot of the table values
// (−12…12) with the int8 activations, scaled by 2^(e − 128) · d_x.
//
// One token: each block's 16 bytes become 32 indices with one broadcast load, a per-half
// shift and a mask; one table shuffle gives |w|, one the signed w whose sign is moved onto
// the activations (AVX2 `vpsignb`, AVX-512 a masked subtract), then `vpmaddubsw`/`vpmaddwd`.
// The scales of 8 blocks are built as one vector (2^(e−128) from the exponent bits), so the
// float work is one multiply-add per block (AVX-512) or per 8 blocks (AVX2, after reducing
// the 8 integer vectors to one). Several tokens: on AVX-512 each 8-block step is decoded once
// in registers and applied to up to four tokens (`rowDots`); on AVX2 (16 registers) the row's
// |w|, w and 2^(e−128) are decoded once into a stack table and every token runs the dot over it.
//
// Bytes read per row: columns × 17/32 (0.53 per weight). One token runs near the memory
// roofline at one thread (~18 GB/s of weights on this EPYC); software prefetches 1–4 KB
// ahead measured 2–3 % slower than the hardware prefetcher alone, so there are none.

#if JINDOU_AVX2
import _Builtin_intrinsics.intel
import JindouTensors

enum MXFP4Kernel {
    /// `kvalues_mxfp4` and its magnitudes in both 128-bit halves (for `vpshufb`).
    @inline(__always)
    static var tables: (signed: __m256i, magnitude: __m256i) {
        let values = GGMLTables.kvaluesMXFP4.base
        let signed = _mm_loadu_si128(UnsafeRawPointer(values).assumingMemoryBound(to: __m128i.self))
        return (_mm256_broadcastsi128_si256(signed), _mm256_broadcastsi128_si256(_mm_abs_epi8(signed)))
    }

    /// The 32 table indices of the block at `p`, in weight order: byte j < 16 is the low
    /// nibble of the block's byte j (weight j), byte 16 + j its high nibble (weight 16 + j).
    @inline(__always)
    static func indices(_ p: UnsafeRawPointer) -> __m256i {
        let bytes = _mm256_broadcastsi128_si256(_mm_loadu_si128((p + 1).assumingMemoryBound(to: __m128i.self)))
        let shifted = _mm256_srlv_epi64(bytes, _mm256_setr_epi64x(0, 0, 4, 4))
        return _mm256_and_si256(shifted, _mm256_set1_epi8(0x0F))
    }

    /// 2^(e − 128) (`ggml_e8m0_to_fp32_half`) of eight exponents.
    @inline(__always)
    static func halfScales(_ e: SIMD8<UInt32>) -> SIMD8<Float> {
        // Intrinsics, not `.replacing(with:where:)`: Swift's SIMD comparisons become a
        // scalar loop through the stack here.
        let v = unsafeBitCast(e, to: __m256i.self)
        let normal = _mm256_slli_epi32(_mm256_sub_epi32(v, _mm256_set1_epi32(1)), 23)
        let subnormal = _mm256_sllv_epi32(_mm256_set1_epi32(0x0020_0000), v)
        let bits = _mm256_blendv_epi8(subnormal, normal, _mm256_cmpgt_epi32(v, _mm256_set1_epi32(1)))
        return unsafeBitCast(bits, to: SIMD8<Float>.self)
    }

    /// The exponents of the 8 blocks from `p`.
    @inline(__always)
    static func exponents(_ p: UnsafeRawPointer) -> SIMD8<UInt32> {
        @inline(__always) func e(_ b: Int) -> UInt32 { UInt32(p.load(fromByteOffset: 17 &* b, as: UInt8.self)) }
        return SIMD8(e(0), e(1), e(2), e(3), e(4), e(5), e(6), e(7))
    }

    /// One block's integer dot as 8 int32 partial sums (AVX2).
    @inline(__always)
    static func blockDot(_ p: UnsafeRawPointer, _ q: UnsafeRawPointer, _ t: (signed: __m256i, magnitude: __m256i)) -> __m256i {
        let n = indices(p)
        let signedActivations = _mm256_sign_epi8(loadBytes32(q), _mm256_shuffle_epi8(t.signed, n))
        return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_shuffle_epi8(t.magnitude, n), signedActivations), _mm256_set1_epi16(1))
    }

    #if JINDOU_AVX512
    /// The |w| of two blocks from `p` (block 0 in the low 256 bits, block 1 in the high) and
    /// the mask of their negative weights. Bit 3 of an index is the sign of `kvalues_mxfp4`
    /// (index 8 is −0: its |w| of 0 makes the product 0 either way), so one `vptestmb`
    /// replaces a second table shuffle; the products then go through `dotBytes` (one
    /// `vpdpbusd` in the VNNI set, |w| ≤ 12 keeps `vpmaddubsw` exact elsewhere).
    @inline(__always)
    static func magnitudesAndSigns(_ p: UnsafeRawPointer, _ magnitude: __m512i, _ shifts: __m512i) -> (__m512i, UInt64) {
        let first = _mm512_broadcast_i32x4(_mm_loadu_si128((p + 1).assumingMemoryBound(to: __m128i.self)))
        let bytes = _mm512_mask_broadcast_i32x4(first, 0xFF00, _mm_loadu_si128((p + 18).assumingMemoryBound(to: __m128i.self)))
        let shifted = _mm512_srlv_epi64(bytes, shifts)
        let n = _mm512_and_si512(shifted, _mm512_set1_epi8(0x0F))
        return (_mm512_shuffle_epi8(magnitude, n), _mm512_test_epi8_mask(shifted, _mm512_set1_epi8(0x08)))
    }
    #endif

    @inline(__always)
    static func rowDot(_ row: UnsafeRawPointer, _ x: ActivationRow, blocks: Int) -> Float {
        let t = tables
        let xq = UnsafeRawPointer(x.values)
        var b = 0
        #if JINDOU_AVX512
        var acc = _mm512_setzero_ps()
        let zero = _mm512_setzero_si512()
        let magnitude = _mm512_broadcast_i32x4(_mm256_castsi256_si128(t.magnitude))
        let shifts: __m512i = SIMD8<Int64>(0, 0, 4, 4, 0, 0, 4, 4)
        while b &+ 8 <= blocks {
            let p = row + 17 &* b
            let scales = _mm512_castps256_ps512(_mm256_mul_ps(halfScales(exponents(p)),
                                                              _mm256_loadu_ps(x.scales + b)))
            @inline(__always) func pair(_ k: Int) {
                let (u, negative) = magnitudesAndSigns(p + 34 &* k, magnitude, shifts)
                let q = _mm512_loadu_si512(xq + 32 &* (b &+ 2 &* k))
                let dot = dotBytes(zero, u, _mm512_mask_sub_epi8(q, negative, zero, q))
                let select = SIMD16<Int32>(lowHalf: SIMD8(repeating: Int32(2 &* k)), highHalf: SIMD8(repeating: Int32(2 &* k &+ 1)))
                let d = _mm512_permutexvar_ps(unsafeBitCast(select, to: __m512i.self), scales)
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), d, acc)
            }
            pair(0); pair(1); pair(2); pair(3)
            b &+= 8
        }
        var sum = _mm512_reduce_add_ps(acc)
        #else
        var acc = _mm256_setzero_ps()
        while b &+ 8 <= blocks {
            let p = row + 17 &* b, q = xq + 32 &* b
            let scales = halfScales(exponents(p)) * UnsafeRawPointer(x.scales + b).loadUnaligned(as: SIMD8<Float>.self)
            let totals = blockTotals(blockDot(p, q, t), blockDot(p + 17, q + 32, t), blockDot(p + 34, q + 64, t),
                                    blockDot(p + 51, q + 96, t), blockDot(p + 68, q + 128, t), blockDot(p + 85, q + 160, t),
                                    blockDot(p + 102, q + 192, t), blockDot(p + 119, q + 224, t))
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(totals), scales, acc)
            b &+= 8
        }
        var sum = sumLanes(acc)
        #endif
        while b < blocks {
            let p = row + 17 &* b
            let s = unsafeBitCast(blockDot(p, xq + 32 &* b, t), to: SIMD8<Int32>.self).wrappedSum()
            sum += (x.scales[b] * MXFP4.halfScale(p.load(as: UInt8.self))) * Float(s)
            b &+= 1
        }
        return sum
    }

    #if JINDOU_AVX512
    /// Σ w·x of one row with `count` (1…4) tokens: each 8-block step is decoded once into
    /// registers (four 64-weight |w| vectors and sign masks) and applied to every token.
    @inline(__always)
    static func rowDots(_ row: UnsafeRawPointer, _ x: (ActivationRow, ActivationRow, ActivationRow, ActivationRow),
                        count: Int, blocks: Int) -> SIMD4<Float> {
        let t = tables
        let zero = _mm512_setzero_si512()
        let magnitude = _mm512_broadcast_i32x4(_mm256_castsi256_si128(t.magnitude))
        let shifts: __m512i = SIMD8<Int64>(0, 0, 4, 4, 0, 0, 4, 4)
        var acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0
        var b = 0
        while b &+ 8 <= blocks {
            let p = row + 17 &* b
            let weightScales = halfScales(exponents(p))
            @inline(__always) func pair(_ k: Int) -> (__m512i, UInt64) { magnitudesAndSigns(p + 34 &* k, magnitude, shifts) }
            let (u0, m0) = pair(0), (u1, m1) = pair(1), (u2, m2) = pair(2), (u3, m3) = pair(3)
            @inline(__always) func token(_ x: ActivationRow, _ acc: inout __m512) {
                let scales = _mm512_castps256_ps512(_mm256_mul_ps(weightScales, _mm256_loadu_ps(x.scales + b)))
                let xq = UnsafeRawPointer(x.values + 32 &* b)
                @inline(__always) func step(_ k: Int, _ u: __m512i, _ m: UInt64) {
                    let q = _mm512_loadu_si512(xq + 64 &* k)
                    let dot = dotBytes(zero, u, _mm512_mask_sub_epi8(q, m, zero, q))
                    let select = SIMD16<Int32>(lowHalf: SIMD8(repeating: Int32(2 &* k)), highHalf: SIMD8(repeating: Int32(2 &* k &+ 1)))
                    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(unsafeBitCast(select, to: __m512i.self), scales), acc)
                }
                step(0, u0, m0); step(1, u1, m1); step(2, u2, m2); step(3, u3, m3)
            }
            token(x.0, &acc0)
            if count > 1 { token(x.1, &acc1) }
            if count > 2 { token(x.2, &acc2) }
            if count > 3 { token(x.3, &acc3) }
            b &+= 8
        }
        var sums = SIMD4<Float>(_mm512_reduce_add_ps(acc0), _mm512_reduce_add_ps(acc1), _mm512_reduce_add_ps(acc2), _mm512_reduce_add_ps(acc3))
        while b < blocks {
            let p = row + 17 &* b
            let e = MXFP4.halfScale(p.load(as: UInt8.self))
            @inline(__always) func tail(_ x: ActivationRow) -> Float {
                (x.scales[b] * e) * Float(unsafeBitCast(blockDot(p, UnsafeRawPointer(x.values + 32 &* b), t), to: SIMD8<Int32>.self).wrappedSum())
            }
            sums[0] += tail(x.0)
            if count > 1 { sums[1] += tail(x.1) }
            if count > 2 { sums[2] += tail(x.2) }
            if count > 3 { sums[3] += tail(x.3) }
            b &+= 1
        }
        return sums
    }
    #endif

    // The stack table of several-token rows: per block 32 bytes of |w| and 32 of w, then
    // one 2^(e − 128) per block after `tableBlocks` blocks.
    static let tableBlocks = 64
    static let tableScales = 64 * tableBlocks

    @inline(__always)
    static func decode(_ row: UnsafeRawPointer, blocks: Int, into tile: UnsafeMutableRawPointer) {
        let t = tables
        let scales = (tile + tableScales).assumingMemoryBound(to: Float.self)
        for b in 0..<blocks {
            let p = row + 17 &* b
            let n = indices(p)
            storeBytes32(tile + 64 &* b, _mm256_shuffle_epi8(t.magnitude, n))
            storeBytes32(tile + (64 &* b &+ 32), _mm256_shuffle_epi8(t.signed, n))
            scales[b] = MXFP4.halfScale(p.load(as: UInt8.self))
        }
    }

    /// One token's Σ over `blocks` decoded blocks (activation blocks `first…`).
    @inline(__always)
    static func tileDot(_ tile: UnsafeRawPointer, _ x: ActivationRow, first: Int, blocks: Int) -> Float {
        let xq = UnsafeRawPointer(x.values + 32 &* first), dx = x.scales + first
        let scales = (tile + tableScales).assumingMemoryBound(to: Float.self)
        let ones = _mm256_set1_epi16(1)
        @inline(__always) func blockDot(_ b: Int) -> __m256i {
            let q = _mm256_sign_epi8(loadBytes32(xq + 32 &* b), loadBytes32(tile + (64 &* b &+ 32)))
            return _mm256_madd_epi16(_mm256_maddubs_epi16(loadBytes32(tile + 64 &* b), q), ones)
        }
        var acc = _mm256_setzero_ps()
        var b = 0
        while b &+ 8 <= blocks {
            let totals = blockTotals(blockDot(b), blockDot(b &+ 1), blockDot(b &+ 2), blockDot(b &+ 3),
                                    blockDot(b &+ 4), blockDot(b &+ 5), blockDot(b &+ 6), blockDot(b &+ 7))
            let d = UnsafeRawPointer(scales + b).loadUnaligned(as: SIMD8<Float>.self) * UnsafeRawPointer(dx + b).loadUnaligned(as: SIMD8<Float>.self)
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(totals), d, acc)
            b &+= 8
        }
        var sum = sumLanes(acc)
        while b < blocks {
            sum += (scales[b] * dx[b]) * Float(unsafeBitCast(blockDot(b), to: SIMD8<Int32>.self).wrappedSum())
            b &+= 1
        }
        return sum
    }
}

/// Rows `rows` of `y = x · Wᵀ` for MXFP4 weights.
@inline(__always)
func mxfp4Rows(_ a: QuantizedActivations, weight: WeightMatrix, rows: Range<Int>, y: UnsafeMutablePointer<Float>, outputStride: Int) {
    let blocks = weight.columns / 32
    if a.tokens == 1 {
        let x = a.row(0)
        for r in rows { y[r] = MXFP4Kernel.rowDot(weight.rowPointer(r), x, blocks: blocks) }
        return
    }
    #if JINDOU_AVX512
    // Up to four tokens per pass over a row, decoded in registers.
    for r in rows {
        let row = weight.rowPointer(r)
        var t = 0
        while t < a.tokens {
            let n = min(4, a.tokens &- t)
            let x = (a.row(t), a.row(t &+ min(1, n &- 1)), a.row(t &+ min(2, n &- 1)), a.row(t &+ min(3, n &- 1)))
            let s = switch n {
            case 1: MXFP4Kernel.rowDots(row, x, count: 1, blocks: blocks)
            case 2: MXFP4Kernel.rowDots(row, x, count: 2, blocks: blocks)
            case 3: MXFP4Kernel.rowDots(row, x, count: 3, blocks: blocks)
            default: MXFP4Kernel.rowDots(row, x, count: 4, blocks: blocks)
            }
            for i in 0..<n { y[(t &+ i) &* outputStride &+ r] = s[i] }
            t &+= n
        }
    }
    #else
    withGridTable { tile in
        for r in rows {
            let row = weight.rowPointer(r)
            var first = 0
            while first < blocks {
                let count = min(MXFP4Kernel.tableBlocks, blocks &- first)
                MXFP4Kernel.decode(row + 17 &* first, blocks: count, into: tile)
                for t in 0..<a.tokens {
                    let s = MXFP4Kernel.tileDot(UnsafeRawPointer(tile), a.row(t), first: first, blocks: count)
                    let index = t &* outputStride &+ r
                    y[index] = first == 0 ? s : y[index] + s
                }
                first &+= count
            }
        }
    }
    #endif
}

/// Lane i of the result = the sum of all lanes of `s[i]` (eight blocks' totals in one vector).
@inline(__always)
func blockTotals(_ s0: __m256i, _ s1: __m256i, _ s2: __m256i, _ s3: __m256i,
                _ s4: __m256i, _ s5: __m256i, _ s6: __m256i, _ s7: __m256i) -> __m256i {
    let a = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3))
    let c = _mm256_hadd_epi32(_mm256_hadd_epi32(s4, s5), _mm256_hadd_epi32(s6, s7))
    // a = [b0…b3 low halves | b0…b3 high halves], c likewise for b4…b7.
    let va = unsafeBitCast(a, to: SIMD8<Int32>.self), vc = unsafeBitCast(c, to: SIMD8<Int32>.self)
    return unsafeBitCast(SIMD8(lowHalf: va.lowHalf, highHalf: vc.lowHalf) &+ SIMD8(lowHalf: va.highHalf, highHalf: vc.highHalf),
                         to: __m256i.self)
}
#endif
