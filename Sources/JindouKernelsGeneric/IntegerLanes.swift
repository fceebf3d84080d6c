// The vector vocabulary of the integer-dot kernels (LegacyDotsSIMD.swift,
// KQuantDotsSIMD.swift), written once for every x86 kernel set:
//
// - AVX2 / AVX-VNNI sets: `Lanes` is one 256-bit register holding 32 bytes of ONE weight row.
// - AVX-512 sets: `Lanes` is one 512-bit register holding the same 32 bytes of TWO weight
//   rows (low half: row r, high half: row r + 1), so every instruction works on two rows at
//   once while the activations, the same for both rows, are broadcast from memory.
//
// A kernel therefore reads as the AVX2 kernel of one row (ggml-cpu's x86 `ggml_vec_dot_*`
// shapes); only the loads, the per-row scalars and the final sums know how many rows a
// register holds (`rowsPerLanes`). Every operation below acts within 128-bit lanes or within
// each 256-bit half, never across the halves.
//
// Integer products: `dotBytes` (u8 × s8, four products summed per int32 lane) is one
// `vpdpbusd` in the VNNI sets and `vpmaddubsw` + `vpmaddwd` elsewhere — exactly equal as long
// as no pair of u8·s8 products exceeds int16 (unsigned operand ≤ 128 with |s| ≤ 127), which
// every caller without VNNI guarantees; `dotWords` (s16 × s16 pairs) is `vpdpwssd` or
// `vpmaddwd` + add.

#if JINDOU_AVX2
import _Builtin_intrinsics.intel
import CJindouSupport
import JindouTensors

#if JINDOU_AVX512
/// 32 bytes of each of two weight rows (see the file comment).
typealias Lanes = __m512i
typealias FloatLanes = __m512
/// 16 bytes of each of two rows.
typealias HalfLanes = __m256i
/// Weight rows one `Lanes` value holds.
let rowsPerLanes = 2
#else
typealias Lanes = __m256i
typealias FloatLanes = __m256
typealias HalfLanes = __m128i
let rowsPerLanes = 1
#endif

@inline(__always) func load256(_ p: UnsafeRawPointer) -> __m256i { _mm256_loadu_si256(p.assumingMemoryBound(to: __m256i.self)) }
@inline(__always) func load128(_ p: UnsafeRawPointer) -> __m128i { _mm_loadu_si128(p.assumingMemoryBound(to: __m128i.self)) }

/// [low | high] (the intrinsics' insert macros are not callable from Swift; LLVM turns the
/// concatenation into one `vinserti128` / `vinserti64x4`).
@inline(__always) func concatenate(_ low: __m128i, _ high: __m128i) -> __m256i {
    unsafeBitCast(SIMD32<Int8>(lowHalf: unsafeBitCast(low, to: SIMD16<Int8>.self), highHalf: unsafeBitCast(high, to: SIMD16<Int8>.self)),
                  to: __m256i.self)
}
#if JINDOU_AVX512
@inline(__always) func concatenate(_ low: __m256i, _ high: __m256i) -> __m512i {
    unsafeBitCast(SIMD64<Int8>(lowHalf: unsafeBitCast(low, to: SIMD32<Int8>.self), highHalf: unsafeBitCast(high, to: SIMD32<Int8>.self)),
                  to: __m512i.self)
}
#endif

/// The weight rows of one `Lanes` value: `first` and (AVX-512) `second`, which may be equal
/// (the odd last row of a range).
struct RowPair {
    let first: UnsafeRawPointer
    let second: UnsafeRawPointer
    /// Bytes from a row to the row whose same offset the kernel prefetches: a whole number
    /// of row pairs ahead (see `prefetchRows`).
    let ahead: Int
    @inline(__always) init(_ first: UnsafeRawPointer, _ second: UnsafeRawPointer, ahead: Int) {
        self.first = first
        self.second = second
        self.ahead = ahead
    }
    @inline(__always) static func + (pair: RowPair, offset: Int) -> RowPair {
        RowPair(pair.first + offset, pair.second + offset, ahead: pair.ahead)
    }
}

/// How far ahead the kernels prefetch, in bytes of reading: the same offset of a row a whole
/// number of row pairs later, at least this far. One core streaming a quantised matrix needs
/// ~12 KiB in flight (measured on Zen 5: 2 KiB ahead streamed Q4_K at 20 GB/s from DRAM,
/// 12 KiB at 31–34 GB/s; the hardware prefetchers alone reached 14); a distance within the
/// row would, with two rows per register, only fetch the other row of the pair.
let prefetchBytesAhead = 12_288

// MARK: - Loads

/// 32 bytes at `offset` of each row.
@inline(__always) func loadRows(_ w: RowPair, _ offset: Int) -> Lanes {
    #if JINDOU_AVX512
    concatenate(load256(w.first + offset), load256(w.second + offset))
    #else
    load256(w.first + offset)
    #endif
}

/// 16 bytes at `offset` of each row.
@inline(__always) func loadRowHalves(_ w: RowPair, _ offset: Int) -> HalfLanes {
    #if JINDOU_AVX512
    concatenate(load128(w.first + offset), load128(w.second + offset))
    #else
    load128(w.first + offset)
    #endif
}

/// 32 activation bytes, the same for every row.
@inline(__always) func loadShared(_ p: UnsafeRawPointer) -> Lanes {
    #if JINDOU_AVX512
    _mm512_broadcast_i64x4(load256(p))
    #else
    load256(p)
    #endif
}

/// 16 bytes, the same for every row.
@inline(__always) func loadSharedHalf(_ p: UnsafeRawPointer) -> HalfLanes {
    #if JINDOU_AVX512
    _mm256_broadcastsi128_si256(load128(p))
    #else
    load128(p)
    #endif
}

/// Per row: `low` in the first 16 bytes, `high` in the next 16.
@inline(__always) func joinHalves(_ low: HalfLanes, _ high: HalfLanes) -> Lanes {
    #if JINDOU_AVX512
    _mm512_permutex2var_epi64(_mm512_castsi256_si512(low), _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0), _mm512_castsi256_si512(high))
    #else
    concatenate(low, high)
    #endif
}

// MARK: - Integer operations (per byte / 16-bit / 32-bit lane)

@inline(__always) func splat8(_ v: Int8) -> Lanes {
    #if JINDOU_AVX512
    _mm512_set1_epi8(CChar(v))
    #else
    _mm256_set1_epi8(CChar(v))
    #endif
}
@inline(__always) func splat16(_ v: Int16) -> Lanes {
    #if JINDOU_AVX512
    _mm512_set1_epi16(v)
    #else
    _mm256_set1_epi16(v)
    #endif
}
@inline(__always) func splat32(_ v: Int32) -> Lanes {
    #if JINDOU_AVX512
    _mm512_set1_epi32(v)
    #else
    _mm256_set1_epi32(v)
    #endif
}
@inline(__always) func zeroLanes() -> Lanes {
    #if JINDOU_AVX512
    _mm512_setzero_si512()
    #else
    _mm256_setzero_si256()
    #endif
}
@inline(__always) func and(_ a: Lanes, _ b: Lanes) -> Lanes {
    #if JINDOU_AVX512
    _mm512_and_si512(a, b)
    #else
    _mm256_and_si256(a, b)
    #endif
}
@inline(__always) func or(_ a: Lanes, _ b: Lanes) -> Lanes {
    #if JINDOU_AVX512
    _mm512_or_si512(a, b)
    #else
    _mm256_or_si256(a, b)
    #endif
}
@inline(__always) func xor(_ a: Lanes, _ b: Lanes) -> Lanes {
    #if JINDOU_AVX512
    _mm512_xor_si512(a, b)
    #else
    _mm256_xor_si256(a, b)
    #endif
}
/// ~a & b.
@inline(__always) func andNot(_ a: Lanes, _ b: Lanes) -> Lanes {
    #if JINDOU_AVX512
    _mm512_andnot_si512(a, b)
    #else
    _mm256_andnot_si256(a, b)
    #endif
}
@inline(__always) func add8(_ a: Lanes, _ b: Lanes) -> Lanes {
    #if JINDOU_AVX512
    _mm512_add_epi8(a, b)
    #else
    _mm256_add_epi8(a, b)
    #endif
}
@inline(__always) func sub8(_ a: Lanes, _ b: Lanes) -> Lanes {
    #if JINDOU_AVX512
    _mm512_sub_epi8(a, b)
    #else
    _mm256_sub_epi8(a, b)
    #endif
}
@inline(__always) func sub16(_ a: Lanes, _ b: Lanes) -> Lanes {
    #if JINDOU_AVX512
    _mm512_sub_epi16(a, b)
    #else
    _mm256_sub_epi16(a, b)
    #endif
}
@inline(__always) func add32(_ a: Lanes, _ b: Lanes) -> Lanes {
    #if JINDOU_AVX512
    _mm512_add_epi32(a, b)
    #else
    _mm256_add_epi32(a, b)
    #endif
}
@inline(__always) func sub32(_ a: Lanes, _ b: Lanes) -> Lanes {
    #if JINDOU_AVX512
    _mm512_sub_epi32(a, b)
    #else
    _mm256_sub_epi32(a, b)
    #endif
}
@inline(__always) func mul32(_ a: Lanes, _ b: Lanes) -> Lanes {
    #if JINDOU_AVX512
    _mm512_mullo_epi32(a, b)
    #else
    _mm256_mullo_epi32(a, b)
    #endif
}
@inline(__always) func shiftRight16(_ a: Lanes, _ n: Int32) -> Lanes {
    #if JINDOU_AVX512
    _mm512_srli_epi16(a, UInt32(n))
    #else
    _mm256_srli_epi16(a, n)
    #endif
}
@inline(__always) func shiftLeft16(_ a: Lanes, _ n: Int32) -> Lanes {
    #if JINDOU_AVX512
    _mm512_slli_epi16(a, UInt32(n))
    #else
    _mm256_slli_epi16(a, n)
    #endif
}
@inline(__always) func shiftLeft32(_ a: Lanes, _ n: Int32) -> Lanes {
    #if JINDOU_AVX512
    _mm512_slli_epi32(a, UInt32(n))
    #else
    _mm256_slli_epi32(a, n)
    #endif
}
@inline(__always) func shiftRightHalf16(_ a: HalfLanes, _ n: Int32) -> HalfLanes {
    #if JINDOU_AVX512
    _mm256_srli_epi16(a, n)
    #else
    _mm_srli_epi16(a, n)
    #endif
}
/// `table` indexed by the low 4 bits of each byte of `index` within each 128-bit lane
/// (`vpshufb`; an index byte with its top bit set gives 0).
@inline(__always) func shuffleBytes(_ table: Lanes, _ index: Lanes) -> Lanes {
    #if JINDOU_AVX512
    _mm512_shuffle_epi8(table, index)
    #else
    _mm256_shuffle_epi8(table, index)
    #endif
}
/// b where a ≥ 0, −b where a < 0, per byte (b ≠ −128): with |a| as the unsigned operand,
/// Σ |a|·(b signed by a) = Σ a·b (where a = 0 the product is 0 either way). `vpsignb`;
/// AVX-512 has no 512-bit form: a masked subtract instead.
@inline(__always) func signBytes(_ b: Lanes, by a: Lanes) -> Lanes {
    #if JINDOU_AVX512
    _mm512_mask_sub_epi8(b, _mm512_movepi8_mask(a), _mm512_setzero_si512(), b)
    #else
    _mm256_sign_epi8(b, a)
    #endif
}
/// |a| per byte.
@inline(__always) func absBytes(_ a: Lanes) -> Lanes {
    #if JINDOU_AVX512
    _mm512_abs_epi8(a)
    #else
    _mm256_abs_epi8(a)
    #endif
}
/// u8 × s8, adjacent pairs summed to int16 (saturating; see the file comment).
@inline(__always) func multiplyBytes(_ unsigned: Lanes, _ signed: Lanes) -> Lanes {
    #if JINDOU_AVX512
    _mm512_maddubs_epi16(unsigned, signed)
    #else
    _mm256_maddubs_epi16(unsigned, signed)
    #endif
}
/// s16 × s16, adjacent pairs summed to int32.
@inline(__always) func multiplyWords(_ a: Lanes, _ b: Lanes) -> Lanes {
    #if JINDOU_AVX512
    _mm512_madd_epi16(a, b)
    #else
    _mm256_madd_epi16(a, b)
    #endif
}

/// acc + Σ of each four u8 × s8 products (int32 lanes).
@inline(__always) func dotBytes(_ acc: Lanes, _ unsigned: Lanes, _ signed: Lanes) -> Lanes {
    #if JINDOU_VNNI && JINDOU_AVX512
    _mm512_dpbusd_epi32(acc, unsigned, signed)
    #elseif JINDOU_VNNI
    _mm256_dpbusd_avx_epi32(acc, unsigned, signed)
    #else
    add32(acc, multiplyWords(multiplyBytes(unsigned, signed), splat16(1)))
    #endif
}

/// acc + Σ of each two s16 × s16 products (int32 lanes).
@inline(__always) func dotWords(_ acc: Lanes, _ a: Lanes, _ b: Lanes) -> Lanes {
    #if JINDOU_VNNI && JINDOU_AVX512
    _mm512_dpwssd_epi32(acc, a, b)
    #elseif JINDOU_VNNI
    _mm256_dpwssd_avx_epi32(acc, a, b)
    #else
    add32(acc, multiplyWords(a, b))
    #endif
}

/// Sign-extends 16 bytes per row to 16 int16 per row.
@inline(__always) func widenSigned(_ a: HalfLanes) -> Lanes {
    #if JINDOU_AVX512
    _mm512_cvtepi8_epi16(a)
    #else
    _mm256_cvtepi8_epi16(a)
    #endif
}
/// Zero-extends 16 bytes per row to 16 int16 per row.
@inline(__always) func widenUnsigned(_ a: HalfLanes) -> Lanes {
    #if JINDOU_AVX512
    _mm512_cvtepu8_epi16(a)
    #else
    _mm256_cvtepu8_epi16(a)
    #endif
}

/// Per row: lane i (of 8) = the sum of all 8 lanes of `s_i` — eight blocks' totals in one
/// vector, so their scales are applied with one multiply-add.
@inline(__always)
func laneTotals(_ s0: Lanes, _ s1: Lanes, _ s2: Lanes, _ s3: Lanes, _ s4: Lanes, _ s5: Lanes, _ s6: Lanes, _ s7: Lanes) -> Lanes {
    #if JINDOU_AVX512
    // No 512-bit vphaddd: interleave-and-add within 128-bit lanes, then fold the two
    // 128-bit lanes of each row together.
    @inline(__always) func pairs(_ a: Lanes, _ b: Lanes) -> Lanes {
        _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
    }
    @inline(__always) func quads(_ a: Lanes, _ b: Lanes) -> Lanes {
        _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b))
    }
    // Per 128-bit lane: [S0 S1 S2 S3] partial sums, and [S4 … S7].
    let a = quads(pairs(s0, s1), pairs(s2, s3)), c = quads(pairs(s4, s5), pairs(s6, s7))
    // Per row: (a.lo + a.hi) in lanes 0–3, (c.lo + c.hi) in lanes 4–7.
    let lows = _mm512_permutex2var_epi64(a, _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0), c)
    let highs = _mm512_permutex2var_epi64(a, _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2), c)
    return _mm512_add_epi32(lows, highs)
    #else
    let a = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3))
    let c = _mm256_hadd_epi32(_mm256_hadd_epi32(s4, s5), _mm256_hadd_epi32(s6, s7))
    // a = [b0..b3 low halves | b0..b3 high halves], c likewise for b4..b7.
    let va = unsafeBitCast(a, to: SIMD8<Int32>.self), vc = unsafeBitCast(c, to: SIMD8<Int32>.self)
    return unsafeBitCast(SIMD8(lowHalf: va.lowHalf, highHalf: vc.lowHalf) &+ SIMD8(lowHalf: va.highHalf, highHalf: vc.highHalf),
                         to: __m256i.self)
    #endif
}

/// Per row, 32 bytes: `low` in the first 128-bit lane, `high` in the second (a constant).
@inline(__always) func bytePattern(_ low: SIMD16<Int8>, _ high: SIMD16<Int8>) -> Lanes {
    let v = unsafeBitCast(SIMD32(lowHalf: low, highHalf: high), to: __m256i.self)
    #if JINDOU_AVX512
    return _mm512_broadcast_i64x4(v)
    #else
    return v
    #endif
}

/// Per row: int16 lane `low` of `words`' first 128-bit lane spread over that lane, and lane
/// `high` of its second over the second (`vpshufb`).
@inline(__always) func pickWords(_ words: Lanes, low: Int, high: Int) -> Lanes {
    @inline(__always) func pattern(_ i: Int) -> SIMD16<Int8> {
        let pair = SIMD2<Int8>(Int8(2 &* i), Int8(2 &* i &+ 1))
        return SIMD16(lowHalf: SIMD8(lowHalf: SIMD4(lowHalf: pair, highHalf: pair), highHalf: SIMD4(lowHalf: pair, highHalf: pair)),
                      highHalf: SIMD8(lowHalf: SIMD4(lowHalf: pair, highHalf: pair), highHalf: SIMD4(lowHalf: pair, highHalf: pair)))
    }
    return shuffleBytes(words, bytePattern(pattern(low), pattern(high)))
}

/// Per row, 16 bytes: byte `low` spread over the first 8, byte `high` over the last 8 (for
/// `widenSigned`: int16 scale `low` in the first 128-bit lane, `high` in the second).
@inline(__always) func pickBytes(_ bytes: HalfLanes, low: Int, high: Int) -> HalfLanes {
    let pattern = SIMD16<Int8>(lowHalf: SIMD8(repeating: Int8(low)), highHalf: SIMD8(repeating: Int8(high)))
    let v = unsafeBitCast(pattern, to: __m128i.self)
    #if JINDOU_AVX512
    return _mm256_shuffle_epi8(bytes, _mm256_broadcastsi128_si256(v))
    #else
    return _mm_shuffle_epi8(bytes, v)
    #endif
}

/// Per row, eight bytes (`first`, `second`: one word per row) as eight int16 in both
/// 128-bit lanes of that row.
@inline(__always) func wordsInBothLanes(_ first: UInt64, _ second: UInt64, signed: Bool) -> Lanes {
    #if JINDOU_AVX512
    let bytes = _mm_set_epi64x(Int64(bitPattern: second), Int64(bitPattern: first))
    let words = signed ? _mm256_cvtepi8_epi16(bytes) : _mm256_cvtepu8_epi16(bytes)
    return _mm512_permutexvar_epi64(_mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0), _mm512_castsi256_si512(words))
    #else
    let bytes = _mm_cvtsi64_si128(Int64(bitPattern: first))
    return _mm256_broadcastsi128_si256(signed ? _mm_cvtepi8_epi16(bytes) : _mm_cvtepu8_epi16(bytes))
    #endif
}

/// Per row, eight bytes as 16 int16: each byte twice ([b0 b0 b1 b1 … b7 b7]).
@inline(__always) func pairedWords(_ first: UInt64, _ second: UInt64) -> Lanes {
    #if JINDOU_AVX512
    let words = _mm256_cvtepu8_epi16(_mm_set_epi64x(Int64(bitPattern: second), Int64(bitPattern: first)))
    return joinHalves(_mm256_unpacklo_epi16(words, words), _mm256_unpackhi_epi16(words, words))
    #else
    let words = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(Int64(bitPattern: first)))
    return joinHalves(_mm_unpacklo_epi16(words, words), _mm_unpackhi_epi16(words, words))
    #endif
}

// MARK: - Floats

@inline(__always) func toFloats(_ a: Lanes) -> FloatLanes {
    #if JINDOU_AVX512
    _mm512_cvtepi32_ps(a)
    #else
    _mm256_cvtepi32_ps(a)
    #endif
}
@inline(__always) func zeroFloats() -> FloatLanes {
    #if JINDOU_AVX512
    _mm512_setzero_ps()
    #else
    _mm256_setzero_ps()
    #endif
}
@inline(__always) func splatFloat(_ v: Float) -> FloatLanes {
    #if JINDOU_AVX512
    _mm512_set1_ps(v)
    #else
    _mm256_set1_ps(v)
    #endif
}
/// a · b + c.
@inline(__always) func multiplyAdd(_ a: FloatLanes, _ b: FloatLanes, _ c: FloatLanes) -> FloatLanes {
    #if JINDOU_AVX512
    _mm512_fmadd_ps(a, b, c)
    #else
    _mm256_fmadd_ps(a, b, c)
    #endif
}
@inline(__always) func multiply(_ a: FloatLanes, _ b: FloatLanes) -> FloatLanes {
    #if JINDOU_AVX512
    _mm512_mul_ps(a, b)
    #else
    _mm256_mul_ps(a, b)
    #endif
}
@inline(__always) func subtract(_ a: FloatLanes, _ b: FloatLanes) -> FloatLanes {
    #if JINDOU_AVX512
    _mm512_sub_ps(a, b)
    #else
    _mm256_sub_ps(a, b)
    #endif
}

/// One float per row, each spread over that row's lanes.
@inline(__always) func perRow(_ first: Float, _ second: Float) -> FloatLanes {
    #if JINDOU_AVX512
    unsafeBitCast(SIMD16<Float>(lowHalf: SIMD8(repeating: first), highHalf: SIMD8(repeating: second)), to: __m512.self)
    #else
    _mm256_set1_ps(first)
    #endif
}

/// The f16 at `offset` of each row, as that row's float.
@inline(__always) func rowHalfFloats(_ w: RowPair, _ offset: Int) -> FloatLanes {
    perRow(Float(halfBits: w.first.loadUnaligned(fromByteOffset: offset, as: UInt16.self)),
           Float(halfBits: w.second.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
}

/// Eight consecutive floats, the same for every row.
@inline(__always) func loadSharedFloats(_ p: UnsafePointer<Float>) -> FloatLanes {
    #if JINDOU_AVX512
    _mm512_broadcast_f32x8(_mm256_loadu_ps(p))
    #else
    _mm256_loadu_ps(p)
    #endif
}

/// Eight consecutive Int16, sign-extended to int32, the same for every row.
@inline(__always) func loadSharedInt16x8(_ p: UnsafePointer<Int16>) -> Lanes {
    let v = _mm256_cvtepi16_epi32(load128(UnsafeRawPointer(p)))
    #if JINDOU_AVX512
    return _mm512_broadcast_i64x4(v)
    #else
    return v
    #endif
}

/// The f16 at byte `offset` of 8 blocks `stride` bytes apart, per row, as floats.
@inline(__always) func halfScales8(_ w: RowPair, offset: Int, stride: Int) -> FloatLanes {
    @inline(__always) func gather(_ p: UnsafeRawPointer) -> SIMD8<UInt16> {
        SIMD8<UInt16>(
            p.loadUnaligned(fromByteOffset: offset, as: UInt16.self), p.loadUnaligned(fromByteOffset: offset &+ stride, as: UInt16.self),
            p.loadUnaligned(fromByteOffset: offset &+ 2 &* stride, as: UInt16.self),
            p.loadUnaligned(fromByteOffset: offset &+ 3 &* stride, as: UInt16.self),
            p.loadUnaligned(fromByteOffset: offset &+ 4 &* stride, as: UInt16.self),
            p.loadUnaligned(fromByteOffset: offset &+ 5 &* stride, as: UInt16.self),
            p.loadUnaligned(fromByteOffset: offset &+ 6 &* stride, as: UInt16.self),
            p.loadUnaligned(fromByteOffset: offset &+ 7 &* stride, as: UInt16.self))
    }
    #if JINDOU_AVX512
    return _mm512_cvtph_ps(unsafeBitCast(SIMD16(lowHalf: gather(w.first), highHalf: gather(w.second)), to: __m256i.self))
    #else
    return _mm256_cvtph_ps(unsafeBitCast(gather(w.first), to: __m128i.self))
    #endif
}

/// Each row's sum of its lanes: (first row, second row; 0 without AVX-512).
@inline(__always) func rowSums(_ v: FloatLanes) -> SIMD2<Float> {
    #if JINDOU_AVX512
    let lanes = unsafeBitCast(v, to: SIMD16<Float>.self)
    return SIMD2(lanes.lowHalf.sum(), lanes.highHalf.sum())
    #else
    return SIMD2(v.sum(), 0)
    #endif
}

/// Each row's sum of its int32 lanes.
@inline(__always) func rowSums(_ v: Lanes) -> SIMD2<Int32> {
    #if JINDOU_AVX512
    let lanes = unsafeBitCast(v, to: SIMD16<Int32>.self)
    return SIMD2(lanes.lowHalf.wrappedSum(), lanes.highHalf.wrappedSum())
    #else
    return SIMD2(unsafeBitCast(v, to: SIMD8<Int32>.self).wrappedSum(), 0)
    #endif
}

/// Prefetches `offset` of the rows `w.ahead` bytes after each of `w`'s.
@inline(__always) func prefetchRows(_ w: RowPair, _ offset: Int) {
    jindou_prefetch(w.first + w.ahead + offset)
    #if JINDOU_AVX512
    jindou_prefetch(w.second + w.ahead + offset)
    #endif
}

// MARK: - Driving a kernel over rows and tokens

/// Up to four tokens' accumulators (a kernel multiplies each decoded weight block with
/// every token of its tile): index with constants only, so they stay in registers.
struct TokenAccumulators<Value> {
    var a0: Value, a1: Value, a2: Value, a3: Value
    @inline(__always) init(_ v: Value) { (a0, a1, a2, a3) = (v, v, v, v) }
    @inline(__always) subscript(_ t: Int) -> Value {
        get {
            switch t {
            case 0: a0
            case 1: a1
            case 2: a2
            default: a3
            }
        }
        set {
            switch t {
            case 0: a0 = newValue
            case 1: a1 = newValue
            case 2: a2 = newValue
            default: a3 = newValue
            }
        }
    }
}

/// A tile's token count as a type, so kernels' token loops have constant bounds.
protocol TokenTile {
    static var count: Int { get }
}
enum OneToken: TokenTile { static var count: Int { 1 } }
enum TwoTokens: TokenTile { static var count: Int { 2 } }
enum ThreeTokens: TokenTile { static var count: Int { 3 } }
enum FourTokens: TokenTile { static var count: Int { 4 } }

/// `body(t)` for t = 0 ..< T.count, unrolled (a loop would leave the token index, and with
/// it the choice of accumulator register, to run time).
@inline(__always) func forEachToken<T: TokenTile>(_: T.Type, _ body: (Int) -> Void) {
    body(0)
    if T.count > 1 { body(1) }
    if T.count > 2 { body(2) }
    if T.count > 3 { body(3) }
}

/// `body(i)` for i = 0 ..< count (a constant ≤ 8), unrolled, so that shuffle patterns and
/// offsets computed from `i` are constants.
@inline(__always) func unrolled(_ count: Int, _ body: (Int) -> Void) {
    body(0)
    if count > 1 { body(1) }
    if count > 2 { body(2) }
    if count > 3 { body(3) }
    if count > 4 { body(4) }
    if count > 5 { body(5) }
    if count > 6 { body(6) }
    if count > 7 { body(7) }
}

/// The activations of a tile's tokens (`T.count` of them used).
struct TokenRows {
    var rows: TokenAccumulators<ActivationRow>
    @inline(__always) init(_ a: QuantizedActivations, first: Int, count: Int) {
        let r0 = a.row(first)
        rows = TokenAccumulators(r0)
        if count > 1 { rows.a1 = a.row(first &+ 1) }
        if count > 2 { rows.a2 = a.row(first &+ 2) }
        if count > 3 { rows.a3 = a.row(first &+ 3) }
    }
    @inline(__always) subscript(_ t: Int) -> ActivationRow { rows[t] }
}

/// An integer-dot kernel of one block format: Σ w·x of `rowsPerLanes` weight rows with
/// each of `T.count` tokens, per row and token.
protocol IntegerRowKernel {
    static func dots<T: TokenTile>(_: T.Type, _ w: RowPair, _ x: TokenRows, blocks: Int) -> TokenAccumulators<SIMD2<Float>>
}

/// `y[t · outputStride + r] = Σ_c x[t, c] · W[r, c]` for `rows` and every token with kernel
/// `K`: rows `rowsPerLanes` at a time; tokens in tiles of four (then 3, 2, 1), so each row's
/// weights are decoded once per four tokens; a single token takes the one-token kernel.
@inline(__always)
func integerRows<K: IntegerRowKernel>(_: K.Type, _ a: QuantizedActivations, weight: WeightMatrix, rows: Range<Int>,
                                      y: UnsafeMutablePointer<Float>, outputStride: Int) {
    let blocks = weight.columns / weight.blockFormat!.blockSize
    let pairBytes = rowsPerLanes &* weight.rowBytes
    let ahead = (prefetchBytesAhead &+ pairBytes &- 1) / pairBytes &* pairBytes
    var r = rows.lowerBound
    while r < rows.upperBound {
        let second = min(r &+ 1, rows.upperBound &- 1)
        let w = RowPair(weight.rowPointer(r), weight.rowPointer(rowsPerLanes == 2 ? second : r), ahead: ahead)
        @inline(__always) func store<T: TokenTile>(_: T.Type, _ first: Int) {
            let sums = K.dots(T.self, w, TokenRows(a, first: first, count: T.count), blocks: blocks)
            forEachToken(T.self) { t in
                let out = y + (first &+ t) &* outputStride
                out[r] = sums[t][0]
                if rowsPerLanes == 2 && second != r { out[second] = sums[t][1] }
            }
        }
        var t = 0
        while t &+ 4 <= a.tokens {
            store(FourTokens.self, t)
            t &+= 4
        }
        switch a.tokens &- t {
        case 3: store(ThreeTokens.self, t)
        case 2: store(TwoTokens.self, t)
        case 1: store(OneToken.self, t)
        default: break
        }
        r &+= rowsPerLanes
    }
}
#endif
