// SIMD kernels of the 1.56/1.75-bit grid formats IQ1_S and IQ1_M over Q8_K activations
// (ggml-cpu's `ggml_vec_dot_iq1_s_q8_K`/`_iq1_m_q8_K`, arch/x86/quants.c).
//
// IQ1 grid values are −1, 0, 1, and every group of 8 (IQ1_M) or 32 (IQ1_S) weights is shifted
// by ±δ with δ = 1/8. Two changes to ggml's arithmetic, both exact in integers:
// - the grid is read with 1 added to every byte (`iq1sGridPlusOne`: 0, 1, 2), so `vpmaddubsw`
//   takes it directly instead of ggml's two sign instructions per 32 weights; the added
//   Σq comes back out through the activations' 16-value sums (Q8_K `bsums`);
// - the δ term is folded into the same integer sum: with 1/δ = 8, ggml's two integer sums
//   (Σ scale·Σ grid·q and Σ scale·(±1)·Σq) combine as S = 8·first + second, and the result is
//   d/8 · S. |S| < 2²⁴, so S is exact in int32 and in float: the value equals ggml's
//   d · (first + δ · second) up to float rounding.
//
// Bytes read per row: columns × 50/256 (IQ1_S) or 56/256 (IQ1_M); the grid (16 KB) stays in
// L1. Bound by the grid lookups (one per 8 weights).

#if JINDOU_AVX2
import _Builtin_intrinsics.intel
import JindouTensors

/// `iq1s_grid` with 1 added to every byte ({−1, 0, 1} → {0, 1, 2}).
let iq1sGridPlusOne: GGMLTable<UInt64> = {
    // The δ folding above needs 1/δ = 8 exactly (ggml's IQ1S_DELTA and IQ1M_DELTA).
    precondition(GGMLTables.iq1sDelta == 0.125 && GGMLTables.iq1mDelta == 0.125, "IQ1 δ is not 1/8")
    return GGMLTable(GGMLTables.iq1sGrid.map { entry in
        var shifted: UInt64 = 0
        for b in 0..<8 {
            let value = Int8(truncatingIfNeeded: entry >> UInt64(8 * b))
            shifted |= UInt64(UInt8(value + 1)) << UInt64(8 * b)
        }
        return shifted
    })
}()

/// IQ1_M's unsigned weights u = 8·(grid + 1) + (1 ± 1) per 12-bit index (the 11-bit grid
/// index and, above it, the sign of the group's shift: clear = +δ → +2): 4096 entries, 32 KB,
/// so one lookup gives a group's 8 weights with its shift applied.
let iq1mShiftedGrid: GGMLTable<UInt64> = GGMLTable((0..<4096).map { index in
    let entry = iq1sGridPlusOne[index & 2047]
    let shift: UInt64 = index < 2048 ? 0x0202_0202_0202_0202 : 0
    return (entry << 3) + shift  // bytes ≤ 18: no carries between them
})

/// 16 int16 lanes, lane j = word j >> 1 of `words` (eight per-32 values for the sixteen
/// 16-value activation sums).
@inline(__always)
func pairedWords(_ words: SIMD8<Int16>) -> __m256i {
    let v = _mm256_broadcastsi128_si256(unsafeBitCast(words, to: __m128i.self))
    let select = SIMD32<UInt8>(0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7,
                               8, 9, 8, 9, 10, 11, 10, 11, 12, 13, 12, 13, 14, 15, 14, 15)
    return _mm256_shuffle_epi8(v, unsafeBitCast(select, to: __m256i.self))
}

/// IQ1_S: block = f16 d, 32 grid-index bytes, then per 32 weights a u16: four 3-bit index
/// highs, a 3-bit scale s and the sign of the shift; w = d · (2s + 1) · (grid ± δ).
enum IQ1_SKernel: GridKernel {
    static var bytesPerBlock: Int { 50 }

    /// Four 11-bit grid indices of sub-block `ib` as 16-bit fields.
    @inline(__always)
    static func indices(_ p: UnsafeRawPointer, _ ib: Int) -> UInt64 {
        let low = UInt64(p.loadUnaligned(fromByteOffset: 2 &+ 4 &* ib, as: UInt32.self))
        let high = UInt64(p.loadUnaligned(fromByteOffset: 34 &+ 2 &* ib, as: UInt16.self))
        return _pdep_u64(low, 0x00FF_00FF_00FF_00FF) | _pdep_u64(high, 0x0700_0700_0700_0700)
    }

    /// Per 32 weights: 8·(2s + 1), the scale of the integer dot (×8: the δ folding), and
    /// (2s + 1)·(±1 − 8), the coefficient of its activation sum (the shift, minus the +1 of
    /// the grid, ×8).
    @inline(__always)
    static func scales(_ p: UnsafeRawPointer) -> (dot: SIMD8<Int16>, sums: SIMD8<Int16>) {
        let qh = p.loadUnaligned(fromByteOffset: 34, as: SIMD8<UInt16>.self)
        let scale = SIMD8<Int16>(truncatingIfNeeded: ((qh &>> 12) & 7) &* 2 &+ 1)
        let shift = SIMD8<Int16>(repeating: -7) &- 2 &* SIMD8<Int16>(truncatingIfNeeded: qh &>> 15)
        return (scale &* 8, scale &* shift)
    }

    @inline(__always)
    static func rowDot(_ row: UnsafeRawPointer, _ x: ActivationRow, superBlocks: Int) -> Float {
        let grid = iq1sGridPlusOne.base
        // 256-bit registers also with AVX-512: with no signs to apply, the wider register
        // only adds the shuffles that join two 4-entry halves (measured slower).
        var acc = _mm256_setzero_ps()
        for i in 0..<superBlocks {
            let p = row + 50 &* i, q8 = UnsafeRawPointer(x.values + 256 &* i)
            let (dot, sums) = scales(p)
            let words = _mm256_broadcastsi128_si256(unsafeBitCast(dot, to: __m128i.self))
            // A loop, not unrolled: unrolled, LLVM hoists all 32 table loads of the block and
            // spills (measured slower).
            var s = _mm256_madd_epi16(loadBytes32(UnsafeRawPointer(x.blockSums + 16 &* i)), pairedWords(sums))
            var select = _mm256_set1_epi16(0x0100)
            for k in 0..<8 {
                let g = gridQuad16(grid, indices(p, k))
                let dot = _mm256_maddubs_epi16(g, loadBytes32(q8 + 32 &* k))
                s = _mm256_add_epi32(s, _mm256_madd_epi16(dot, _mm256_shuffle_epi8(words, select)))
                select = _mm256_add_epi8(select, _mm256_set1_epi8(2))
            }
            let d = Float(halfBits: p.loadUnaligned(as: UInt16.self)) * x.scales[i]
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d), acc)
        }
        return 0.125 * sumLanes(acc)
    }

    @inline(__always)
    static func decode(_ p: UnsafeRawPointer, into tile: UnsafeMutableRawPointer) {
        let grid = iq1sGridPlusOne.base
        let (dot, sums) = scales(p)
        #if JINDOU_AVX512
        let words = _mm512_castsi256_si512(pairedWords(dot))
        @inline(__always) func pair(_ j: Int) {
            _mm512_storeu_si512(tile + 64 &* j, gridOctet16(grid, indices(p, 2 &* j), indices(p, 2 &* j &+ 1)))
            _mm512_storeu_si512(tile + (GridTile.scaleWords &+ 64 &* j), pairScales(words, j))
        }
        pair(0); pair(1); pair(2); pair(3)
        #else
        let words = _mm256_broadcastsi128_si256(unsafeBitCast(dot, to: __m128i.self))
        @inline(__always) func part(_ k: Int) {
            storeBytes32(tile + 32 &* k, gridQuad16(grid, indices(p, k)))
            storeBytes32(tile + (GridTile.scaleWords &+ 32 &* k), scaleOf(words, k))
        }
        part(0); part(1); part(2); part(3); part(4); part(5); part(6); part(7)
        #endif
        storeBytes32(tile + GridTile.coefficients, pairedWords(sums))
        (tile + GridTile.scale).storeBytes(of: 0.125 * Float(halfBits: p.loadUnaligned(as: UInt16.self)), as: Float.self)
    }
}
#endif

#if JINDOU_AVX2
/// IQ1_M: block = 32 grid-index bytes, 16 bytes of index highs and shift signs (per 8
/// weights a 3-bit high and the sign of ±δ), 8 bytes of sixteen 3-bit scales s (per 16
/// weights) with the f16 d spread over their top nibbles; w = d · (2s + 1) · (grid ± δ).
/// With δ = 1/8 every weight is (8·grid ± 1)/8: u = 8·(grid + 1) + (1 ± 1) = (8·grid ± 1) + 9
/// is a byte in 0…18, and −9·(2s + 1) times the activations' 16-value sums takes the 9
/// back out, so S = Σ (2s + 1)·Σ (8·grid ± 1)·q is exact and the result is d/8 · S.
enum IQ1_MKernel: GridKernel {
    static var bytesPerBlock: Int { 56 }

    /// The f16 d of the block (the top nibbles of the four scale words).
    @inline(__always)
    static func d(_ p: UnsafeRawPointer) -> Float {
        let s = p.loadUnaligned(fromByteOffset: 48, as: SIMD4<UInt16>.self)
        return Float(halfBits: (s[0] >> 12) | ((s[1] >> 8) & 0x00F0) | ((s[2] >> 4) & 0x0F00) | (s[3] & 0xF000))
    }

    /// The sixteen per-16 scales 2s + 1 as int16 words.
    @inline(__always)
    static func scales(_ p: UnsafeRawPointer) -> __m256i {
        let s = SIMD4<UInt32>(truncatingIfNeeded: p.loadUnaligned(fromByteOffset: 48, as: SIMD4<UInt16>.self))
        let shifts = SIMD8<UInt32>(0, 3, 6, 9, 0, 3, 6, 9)
        let low = (SIMD8<UInt32>(s[0], s[0], s[0], s[0], s[1], s[1], s[1], s[1]) &>> shifts) & 7
        let high = (SIMD8<UInt32>(s[2], s[2], s[2], s[2], s[3], s[3], s[3], s[3]) &>> shifts) & 7
        let packed = _mm256_packus_epi32(unsafeBitCast(low, to: __m256i.self), unsafeBitCast(high, to: __m256i.self))
        let words = _mm256_permutevar8x32_epi32(packed, unsafeBitCast(SIMD8<Int32>(0, 1, 4, 5, 2, 3, 6, 7), to: __m256i.self))
        return _mm256_add_epi16(_mm256_add_epi16(words, words), _mm256_set1_epi16(1))
    }

    /// The 32 unsigned weights u of sub-block k (see the type's comment): each group's
    /// 12-bit index into `iq1mShiftedGrid` is its grid-index byte and the nibble of `qh`
    /// above it (3 index bits and the shift's sign).
    @inline(__always)
    static func values(_ grid: UnsafePointer<UInt64>, _ p: UnsafeRawPointer, _ k: Int) -> __m256i {
        let qh = UInt64(p.loadUnaligned(fromByteOffset: 32 &+ 2 &* k, as: UInt16.self))
        let low = UInt64(p.loadUnaligned(fromByteOffset: 4 &* k, as: UInt32.self))
        return gridQuad16(grid, _pdep_u64(low, 0x00FF_00FF_00FF_00FF) | _pdep_u64(qh, 0x0F00_0F00_0F00_0F00))
    }

    @inline(__always)
    static func rowDot(_ row: UnsafeRawPointer, _ x: ActivationRow, superBlocks: Int) -> Float {
        let grid = iq1mShiftedGrid.base
        var acc = _mm256_setzero_ps()
        for i in 0..<superBlocks {
            let p = row + 56 &* i, q8 = UnsafeRawPointer(x.values + 256 &* i)
            let scales16 = scales(p)
            let halves = scaleHalves(scales16)
            let coefficients = _mm256_mullo_epi16(scales16, _mm256_set1_epi16(-9))
            var s = _mm256_madd_epi16(loadBytes32(UnsafeRawPointer(x.blockSums + 16 &* i)), coefficients)
            #if JINDOU_AVX512
            // Loops, not unrolled: compiled for AVX-512, the unrolled form has its 32 lookups
            // hoisted and spilled (as IQ1_S); for AVX2 it is the faster one.
            for half in 0..<2 {
                let source = half == 0 ? halves.low : halves.high
                // Words 0…7 ← scale 2k, 8…15 ← scale 2k + 1 (bytes 4k′…4k′ + 3 of the half).
                var select = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3)
                for k in (4 &* half)..<(4 &* half &+ 4) {
                    let dot = _mm256_maddubs_epi16(values(grid, p, k), loadBytes32(q8 + 32 &* k))
                    s = _mm256_add_epi32(s, _mm256_madd_epi16(dot, _mm256_shuffle_epi8(source, select)))
                    select = _mm256_add_epi8(select, _mm256_set1_epi8(4))
                }
            }
            #else
            @inline(__always) func part(_ k: Int) -> __m256i {
                _mm256_madd_epi16(_mm256_maddubs_epi16(values(grid, p, k), loadBytes32(q8 + 32 &* k)), subBlockScales(halves, k))
            }
            s = _mm256_add_epi32(s, _mm256_add_epi32(_mm256_add_epi32(part(0), part(1)), _mm256_add_epi32(part(2), part(3))))
            s = _mm256_add_epi32(s, _mm256_add_epi32(_mm256_add_epi32(part(4), part(5)), _mm256_add_epi32(part(6), part(7))))
            #endif
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d(p) * x.scales[i]), acc)
        }
        return 0.125 * sumLanes(acc)
    }

    @inline(__always)
    static func decode(_ p: UnsafeRawPointer, into tile: UnsafeMutableRawPointer) {
        let grid = iq1mShiftedGrid.base
        let scales16 = scales(p)
        let halves = scaleHalves(scales16)
        @inline(__always) func part(_ k: Int) {
            storeBytes32(tile + 32 &* k, values(grid, p, k))
            storeBytes32(tile + (GridTile.scaleWords &+ 32 &* k), subBlockScales(halves, k))
        }
        part(0); part(1); part(2); part(3); part(4); part(5); part(6); part(7)
        storeBytes32(tile + GridTile.coefficients, _mm256_mullo_epi16(scales16, _mm256_set1_epi16(-9)))
        (tile + GridTile.scale).storeBytes(of: 0.125 * d(p), as: Float.self)
    }
}
#endif
