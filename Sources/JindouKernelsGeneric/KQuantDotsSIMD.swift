// Integer-dot row kernels for the 256-weight formats Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and
// IQ4_XS over activations rounded to Q8_K, for every x86 kernel set (IntegerLanes.swift:
// one row per register on AVX2, two on AVX-512). They follow ggml-cpu's x86
// `ggml_vec_dot_q*_K_q8_K` / `ggml_vec_dot_iq4_xs_q8_K`: per 32 weights one `vpmaddubsw`
// of the unsigned quants with the activations, then `vpmaddwd` with that sub-block's scale
// (`vpdpwssd` with VNNI) into one int32 accumulator per super-block, converted and scaled
// once per super-block; the min / offset terms (−dmin·m, −32 in Q6_K, −4 in Q3_K) from the
// activations' 16-value sums. Differences from ggml: Q3_K's high bit is or-ed into the
// quant (u = q + 4h) and its −4 taken from the sums like Q6_K's −32, instead of a second
// multiply per 32 weights; and a row's weights are decoded once for up to four tokens.
// Every integer sum equals the scalar kernel's (BlockDots.swift); only the float
// summation order differs.
//
// Bytes read per row: rowBytes (Q2_K 0.328, Q3_K 0.430, Q4_K 0.5625, Q5_K 0.6875, Q6_K 0.820,
// IQ4_XS 0.531 bytes per weight); the activations (~1.1 bytes per column and token) stay in
// L1/L2. Roofline: the read bandwidth over those bytes — at one thread the low-bit formats
// are close to the integer-multiply throughput, which is why each 32 weights cost as few
// instructions as the layout allows.

#if JINDOU_AVX2
import _Builtin_intrinsics.intel
import CJindouSupport
import JindouTensors

/// One super-block of a 256-weight format for `KQuantKernel`.
protocol KBlockKernel {
    static var bytesPerBlock: Int { get }
    /// Adds super-block `s` (at `w`) times every token's activations to `acc` (float lanes
    /// whose per-row sums are the dot products).
    static func superBlock<T: TokenTile>(_: T.Type, _ w: RowPair, _ x: TokenRows, _ s: Int,
                                         _ acc: inout TokenAccumulators<FloatLanes>)
}

/// The row kernel of a 256-weight format `F`.
enum KQuantKernel<F: KBlockKernel>: IntegerRowKernel {
    @inline(__always)
    static func dots<T: TokenTile>(_: T.Type, _ w: RowPair, _ x: TokenRows, blocks: Int) -> TokenAccumulators<SIMD2<Float>> {
        let size = F.bytesPerBlock
        var acc = TokenAccumulators(zeroFloats())
        for s in 0..<blocks {
            let p = w + s &* size
            // About 1–2 KiB ahead, every line of the super-block once or twice.
            for line in stride(from: 0, to: size, by: 64) { prefetchRows(p, line) }
            F.superBlock(T.self, p, x, s, &acc)
        }
        var result = TokenAccumulators(SIMD2<Float>())
        forEachToken(T.self) { t in result[t] = rowSums(acc[t]) }
        return result
    }
}

/// d_w · d_x per row for token `t`'s super-block `s`.
@inline(__always) private func combinedScale(_ rowScale: FloatLanes, _ x: TokenRows, _ t: Int, _ s: Int) -> FloatLanes {
    multiply(rowScale, splatFloat(x[t].scales[s]))
}

/// Token `t`'s sixteen 16-value sums of super-block `s`.
@inline(__always) private func blockSums(_ x: TokenRows, _ t: Int, _ s: Int) -> Lanes {
    loadShared(UnsafeRawPointer(x[t].blockSums + 16 &* s))
}

/// Token `t`'s 32 activations at `index` of super-block `s`.
@inline(__always) private func activations(_ x: TokenRows, _ t: Int, _ s: Int, _ index: Int) -> Lanes {
    loadShared(UnsafeRawPointer(x[t].values) + (256 &* s &+ index))
}

/// Q4_K/Q5_K's eight 6-bit scales and mins (`kScalesAndMins`'s bytes) of one row.
@inline(__always) private func packedScalesAndMins(_ packed: UnsafeRawPointer) -> (scales: UInt64, mins: UInt64) {
    let u0 = packed.loadUnaligned(as: UInt32.self)
    let u1 = packed.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
    let u2 = packed.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
    let low6: UInt32 = 0x3F3F_3F3F, low4: UInt32 = 0x0F0F_0F0F, low2: UInt32 = 0x0303_0303
    let scales = UInt64(u0 & low6) | UInt64((u2 & low4) | (((u0 >> 6) & low2) << 4)) << 32
    let mins = UInt64(u1 & low6) | UInt64(((u2 >> 4) & low4) | (((u1 >> 6) & low2) << 4)) << 32
    return (scales, mins)
}

/// Q4_K and Q5_K (they differ only in the fifth bit): per 64 weights, 32 bytes of nibbles
/// (low: the first 32 weights, high: the next); w = d·sc·q − dmin·m per 32.
@inline(__always)
private func q4q5SuperBlock<T: TokenTile>(_: T.Type, _ w: RowPair, _ x: TokenRows, _ s: Int,
                                          _ acc: inout TokenAccumulators<FloatLanes>, quants: Int, fifthBits: Int?) {
    let first = packedScalesAndMins(w.first + 4), second = packedScalesAndMins(w.second + 4)
    let scales = wordsInBothLanes(first.scales, second.scales, signed: false)
    let mins = pairedWords(first.mins, second.mins)
    let high = fifthBits != nil ? loadRows(w, fifthBits!) : zeroLanes()
    var sums = TokenAccumulators(zeroLanes())
    unrolled(4) { group in
        let bytes = loadRows(w, quants &+ 32 &* group)
        var low = and(bytes, splat8(0x0F)), upper = and(shiftRight16(bytes, 4), splat8(0x0F))
        if fifthBits != nil {
            // Bits 2g and 2g+1 of each high byte, moved to bit 4 (masked first, so the 16-bit
            // shifts never carry between bytes).
            @inline(__always) func bit(_ j: Int) -> Lanes {
                let masked = and(high, splat8(Int8(truncatingIfNeeded: 1 << j)))
                return j < 4 ? shiftLeft16(masked, Int32(4 &- j)) : j == 4 ? masked : shiftRight16(masked, Int32(j &- 4))
            }
            low = or(low, bit(2 &* group))
            upper = or(upper, bit(2 &* group &+ 1))
        }
        let scaleLow = pickWords(scales, low: 2 &* group, high: 2 &* group)
        let scaleHigh = pickWords(scales, low: 2 &* group &+ 1, high: 2 &* group &+ 1)
        forEachToken(T.self) { t in
            sums[t] = dotWords(sums[t], multiplyBytes(low, activations(x, t, s, 64 &* group)), scaleLow)
            sums[t] = dotWords(sums[t], multiplyBytes(upper, activations(x, t, s, 64 &* group &+ 32)), scaleHigh)
        }
    }
    let d = rowHalfFloats(w, 0), dmin = rowHalfFloats(w, 2)
    forEachToken(T.self) { t in
        acc[t] = multiplyAdd(toFloats(sums[t]), combinedScale(d, x, t, s), acc[t])
        // (bsums[2k] + bsums[2k+1]) · m_k for the eight sub-blocks k.
        let minimum = multiplyWords(blockSums(x, t, s), mins)
        acc[t] = subtract(acc[t], multiply(toFloats(minimum), combinedScale(dmin, x, t, s)))
    }
}

enum Q4_KBlockKernel: KBlockKernel {
    static var bytesPerBlock: Int { 144 }
    @inline(__always)
    static func superBlock<T: TokenTile>(_: T.Type, _ w: RowPair, _ x: TokenRows, _ s: Int, _ acc: inout TokenAccumulators<FloatLanes>) {
        q4q5SuperBlock(T.self, w, x, s, &acc, quants: 16, fifthBits: nil)
    }
}

enum Q5_KBlockKernel: KBlockKernel {
    static var bytesPerBlock: Int { 176 }
    @inline(__always)
    static func superBlock<T: TokenTile>(_: T.Type, _ w: RowPair, _ x: TokenRows, _ s: Int, _ acc: inout TokenAccumulators<FloatLanes>) {
        q4q5SuperBlock(T.self, w, x, s, &acc, quants: 48, fifthBits: 16)
    }
}

/// Q6_K: 128 bytes of low nibbles, 64 of 2-bit highs, sixteen int8 scales, f16 d;
/// w = d·sc·(q − 32) per 16. The −32 comes off once per super-block: 32·Σ sc·bsum.
enum Q6_KBlockKernel: KBlockKernel {
    static var bytesPerBlock: Int { 210 }
    @inline(__always)
    static func superBlock<T: TokenTile>(_: T.Type, _ w: RowPair, _ x: TokenRows, _ s: Int, _ acc: inout TokenAccumulators<FloatLanes>) {
        let scaleBytes = loadRowHalves(w, 192)
        var sums = TokenAccumulators(zeroLanes())
        unrolled(2) { half in
            let bits1 = loadRows(w, 64 &* half), bits2 = loadRows(w, 64 &* half &+ 32), highs = loadRows(w, 128 &+ 32 &* half)
            let m4 = splat8(0x0F)
            let q0 = or(and(bits1, m4), shiftLeft16(and(highs, splat8(0x03)), 4))
            let q1 = or(and(bits2, m4), shiftLeft16(and(highs, splat8(0x0C)), 2))
            let q2 = or(and(shiftRight16(bits1, 4), m4), and(highs, splat8(0x30)))
            let q3 = or(and(shiftRight16(bits2, 4), m4), shiftRight16(and(highs, splat8(-64)), 2))
            @inline(__always) func scale(_ k: Int) -> Lanes {
                widenSigned(pickBytes(scaleBytes, low: 8 &* half &+ 2 &* k, high: 8 &* half &+ 2 &* k &+ 1))
            }
            let s0 = scale(0), s1 = scale(1), s2 = scale(2), s3 = scale(3)
            forEachToken(T.self) { t in
                let base = 128 &* half
                sums[t] = dotWords(sums[t], multiplyBytes(q0, activations(x, t, s, base)), s0)
                sums[t] = dotWords(sums[t], multiplyBytes(q1, activations(x, t, s, base &+ 32)), s1)
                sums[t] = dotWords(sums[t], multiplyBytes(q2, activations(x, t, s, base &+ 64)), s2)
                sums[t] = dotWords(sums[t], multiplyBytes(q3, activations(x, t, s, base &+ 96)), s3)
            }
        }
        let allScales = widenSigned(scaleBytes)
        let d = rowHalfFloats(w, 208)
        forEachToken(T.self) { t in
            let offset = shiftLeft32(multiplyWords(blockSums(x, t, s), allScales), 5)
            acc[t] = multiplyAdd(toFloats(sub32(sums[t], offset)), combinedScale(d, x, t, s), acc[t])
        }
    }
}

/// The sixteen 6-bit scales of Q3_K (the scalar kernel's `words`, before the −32) of one row.
@inline(__always) private func q3_KScales(_ p: UnsafeRawPointer) -> (UInt64, UInt64) {
    let u0 = p.loadUnaligned(fromByteOffset: 96, as: UInt32.self)
    let u1 = p.loadUnaligned(fromByteOffset: 100, as: UInt32.self)
    let tmp = p.loadUnaligned(fromByteOffset: 104, as: UInt32.self)
    let m1: UInt32 = 0x0303_0303, m2: UInt32 = 0x0F0F_0F0F
    let w0 = (u0 & m2) | (((tmp >> 0) & m1) << 4), w1 = (u1 & m2) | (((tmp >> 2) & m1) << 4)
    let w2 = ((u0 >> 4) & m2) | (((tmp >> 4) & m1) << 4), w3 = ((u1 >> 4) & m2) | (((tmp >> 6) & m1) << 4)
    return (UInt64(w0) | UInt64(w1) << 32, UInt64(w2) | UInt64(w3) << 32)
}

/// Q3_K: 32 bytes of high bits, 64 of 2-bit quants, twelve bytes of sixteen 6-bit scales,
/// f16 d; w = d·(sc − 32)·(q − 4·!h) per 16. Here u = q + 4h (0…7) is multiplied and
/// 4·Σ sc·bsum subtracted once per super-block.
enum Q3_KBlockKernel: KBlockKernel {
    static var bytesPerBlock: Int { 110 }
    @inline(__always)
    static func superBlock<T: TokenTile>(_: T.Type, _ w: RowPair, _ x: TokenRows, _ s: Int, _ acc: inout TokenAccumulators<FloatLanes>) {
        let (a0, a1) = q3_KScales(w.first), (b0, b1) = q3_KScales(w.second)
        #if JINDOU_AVX512
        let scaleBytes = _mm256_sub_epi8(_mm256_set_epi64x(Int64(bitPattern: b1), Int64(bitPattern: b0), Int64(bitPattern: a1),
                                                           Int64(bitPattern: a0)), _mm256_set1_epi8(32))
        #else
        let scaleBytes = _mm_sub_epi8(_mm_set_epi64x(Int64(bitPattern: a1), Int64(bitPattern: a0)), _mm_set1_epi8(32))
        #endif
        let highBits = loadRows(w, 0)
        var sums = TokenAccumulators(zeroLanes())
        unrolled(2) { half in
            let bits = loadRows(w, 32 &+ 32 &* half)
            @inline(__always) func quant(_ i: Int) -> Lanes {
                let low = and(i == 0 ? bits : shiftRight16(bits, Int32(2 &* i)), splat8(3))
                // High bit 4·half + i of each byte, moved to bit 2.
                let j = 4 &* half &+ i
                let masked = and(highBits, splat8(Int8(truncatingIfNeeded: 1 << j)))
                let h = j < 2 ? shiftLeft16(masked, Int32(2 &- j)) : j == 2 ? masked : shiftRight16(masked, Int32(j &- 2))
                return or(low, h)
            }
            let q0 = quant(0), q1 = quant(1), q2 = quant(2), q3 = quant(3)
            @inline(__always) func scale(_ k: Int) -> Lanes {
                widenSigned(pickBytes(scaleBytes, low: 8 &* half &+ 2 &* k, high: 8 &* half &+ 2 &* k &+ 1))
            }
            let s0 = scale(0), s1 = scale(1), s2 = scale(2), s3 = scale(3)
            forEachToken(T.self) { t in
                let base = 128 &* half
                sums[t] = dotWords(sums[t], multiplyBytes(q0, activations(x, t, s, base)), s0)
                sums[t] = dotWords(sums[t], multiplyBytes(q1, activations(x, t, s, base &+ 32)), s1)
                sums[t] = dotWords(sums[t], multiplyBytes(q2, activations(x, t, s, base &+ 64)), s2)
                sums[t] = dotWords(sums[t], multiplyBytes(q3, activations(x, t, s, base &+ 96)), s3)
            }
        }
        let allScales = widenSigned(scaleBytes)
        let d = rowHalfFloats(w, 108)
        forEachToken(T.self) { t in
            let offset = shiftLeft32(multiplyWords(blockSums(x, t, s), allScales), 2)
            acc[t] = multiplyAdd(toFloats(sub32(sums[t], offset)), combinedScale(d, x, t, s), acc[t])
        }
    }
}

/// Q2_K: sixteen bytes of scales (low nibble) and mins (high), 64 bytes of 2-bit quants,
/// f16 d, f16 dmin; w = d·sc·q − dmin·m per 16.
enum Q2_KBlockKernel: KBlockKernel {
    static var bytesPerBlock: Int { 84 }
    @inline(__always)
    static func superBlock<T: TokenTile>(_: T.Type, _ w: RowPair, _ x: TokenRows, _ s: Int, _ acc: inout TokenAccumulators<FloatLanes>) {
        let packed = loadRowHalves(w, 0)
        #if JINDOU_AVX512
        let low4 = _mm256_set1_epi8(0x0F)
        let scaleBytes = _mm256_and_si256(packed, low4), minBytes = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4)
        #else
        let low4 = _mm_set1_epi8(0x0F)
        let scaleBytes = _mm_and_si128(packed, low4), minBytes = _mm_and_si128(_mm_srli_epi16(packed, 4), low4)
        #endif
        var sums = TokenAccumulators(zeroLanes())
        unrolled(2) { half in
            let bits = loadRows(w, 16 &+ 32 &* half)
            let m3 = splat8(3)
            let q0 = and(bits, m3), q1 = and(shiftRight16(bits, 2), m3), q2 = and(shiftRight16(bits, 4), m3), q3 = and(shiftRight16(bits, 6), m3)
            @inline(__always) func scale(_ k: Int) -> Lanes {
                widenSigned(pickBytes(scaleBytes, low: 8 &* half &+ 2 &* k, high: 8 &* half &+ 2 &* k &+ 1))
            }
            let s0 = scale(0), s1 = scale(1), s2 = scale(2), s3 = scale(3)
            forEachToken(T.self) { t in
                let base = 128 &* half
                sums[t] = dotWords(sums[t], multiplyBytes(q0, activations(x, t, s, base)), s0)
                sums[t] = dotWords(sums[t], multiplyBytes(q1, activations(x, t, s, base &+ 32)), s1)
                sums[t] = dotWords(sums[t], multiplyBytes(q2, activations(x, t, s, base &+ 64)), s2)
                sums[t] = dotWords(sums[t], multiplyBytes(q3, activations(x, t, s, base &+ 96)), s3)
            }
        }
        let mins = widenSigned(minBytes)
        let d = rowHalfFloats(w, 80), dmin = rowHalfFloats(w, 82)
        forEachToken(T.self) { t in
            acc[t] = multiplyAdd(toFloats(sums[t]), combinedScale(d, x, t, s), acc[t])
            let minimum = multiplyWords(blockSums(x, t, s), mins)
            acc[t] = subtract(acc[t], multiply(toFloats(minimum), combinedScale(dmin, x, t, s)))
        }
    }
}

/// IQ4_XS' eight 6-bit scales (before the −32) of one row.
@inline(__always) private func iq4_XSScales(_ p: UnsafeRawPointer) -> UInt64 {
    let high = UInt64(p.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
    let low = UInt64(p.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
    // Scale j = low nibble j | (2 high bits j) << 4, one byte each: two `pdep`s (BMI2, in
    // every AVX2 set) instead of a loop of shifts per row and super-block.
    return _pdep_u64(low, 0x0F0F_0F0F_0F0F_0F0F) | _pdep_u64(high, 0x3030_3030_3030_3030)
}

/// IQ4_XS: f16 d, 16 high scale bits, 4 bytes of low scale nibbles, 128 bytes of nibbles
/// indexing `kvalues_iq4nl` (per 32 weights: low nibbles the first 16, high the next);
/// w = d·(sc − 32)·kvalue per 32. Signed weights: ggml's |w| · (x signed by w).
enum IQ4_XSBlockKernel: KBlockKernel {
    static var bytesPerBlock: Int { 136 }
    @inline(__always)
    static func superBlock<T: TokenTile>(_: T.Type, _ w: RowPair, _ x: TokenRows, _ s: Int, _ acc: inout TokenAccumulators<FloatLanes>) {
        let scales = sub16(wordsInBothLanes(iq4_XSScales(w.first), iq4_XSScales(w.second), signed: false), splat16(32))
        let table = iq4Table(offset: 0)
        var sums = TokenAccumulators(zeroLanes())
        unrolled(8) { j in
            let raw = loadRowHalves(w, 8 &+ 16 &* j)
            let indices = and(joinHalves(raw, shiftRightHalf16(raw, 4)), splat8(0x0F))
            let values = shuffleBytes(table, indices)
            let magnitudes = absBytes(values)
            let scale = pickWords(scales, low: j, high: j)
            forEachToken(T.self) { t in
                let signed = signBytes(activations(x, t, s, 32 &* j), by: values)
                sums[t] = dotWords(sums[t], multiplyBytes(magnitudes, signed), scale)
            }
        }
        let d = rowHalfFloats(w, 0)
        forEachToken(T.self) { t in
            acc[t] = multiplyAdd(toFloats(sums[t]), combinedScale(d, x, t, s), acc[t])
        }
    }
}

/// Runs the SIMD kernel of a 256-weight format; false if this file has none for `format`.
@inline(__always)
func kQuantRowsSIMD(_ format: BlockFormat, _ a: QuantizedActivations, weight: WeightMatrix, rows: Range<Int>,
                    y: UnsafeMutablePointer<Float>, outputStride: Int) -> Bool {
    switch format {
    case .q2_K: integerRows(KQuantKernel<Q2_KBlockKernel>.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .q3_K: integerRows(KQuantKernel<Q3_KBlockKernel>.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .q4_K: integerRows(KQuantKernel<Q4_KBlockKernel>.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .q5_K: integerRows(KQuantKernel<Q5_KBlockKernel>.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .q6_K: integerRows(KQuantKernel<Q6_KBlockKernel>.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .iq4_xs: integerRows(KQuantKernel<IQ4_XSBlockKernel>.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    default: return false
    }
    return true
}
#endif
