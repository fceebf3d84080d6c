// SIMD kernels of the sign-and-magnitude grid formats — IQ2_XXS, IQ2_XS, IQ2_S here,
// IQ3_XXS and IQ3_S in GridKernelsIQ3.swift — over Q8_K activations (ggml-cpu's
// `ggml_vec_dot_iq2_*_q8_K`/`_iq3_*_q8_K`, arch/x86/quants.c): unsigned grid magnitudes
// times the activations with the weights' signs applied to the activations, `vpmaddubsw`,
// then `vpmaddwd` with the per-16 scales, one float multiply-add per super-block.
//
// What differs from ggml's AVX2 code is the signs: ggml looks up 8 sign bytes per 8 weights
// (`keven_signs_q2xs`, `_mm256_set_epi64x` of four table entries per 32 weights); here a
// super-block's 256 sign bits are one vector (for IQ2_XXS/IQ2_XS/IQ3_XXS the 7-bit indices
// completed with a nibble-parity shuffle, `withParityBit`), and AVX-512 applies 64 of them
// with one masked subtract. The grid lookups themselves (one 8-byte load per 8 weights, or
// 4-byte per 4 for IQ3) remain and bound these kernels; memory does not.
//
// Bytes read per row: columns × 66/256 (IQ2_XXS), 74/256 (IQ2_XS), 82/256 (IQ2_S); the grids
// (2–8 KB) stay in L1.

#if JINDOU_AVX2
import _Builtin_intrinsics.intel
import JindouTensors

/// A grid format whose weights are unsigned grid magnitudes, a sign bit each and a scale
/// per 16 (or 32) weights, with `d` as the block's first two bytes.
protocol SignedGridFormat {
    associatedtype Grid
    static var bytesPerBlock: Int { get }
    /// The grid, read once per call.
    static var grid: UnsafePointer<Grid> { get }
    /// ggml's constant factor of the block's d (IQ2: 1/8, IQ3_XXS: 1/4, IQ3_S: 1).
    static var multiplier: Float { get }
    /// The block's 256 sign bits: bit j of byte g set when weight 8g + j is negative (lane k:
    /// sub-block k).
    static func signs(_ block: UnsafeRawPointer) -> SIMD8<UInt32>
    /// The block's sixteen per-16 scales as int16 words (word j: weights 16j…16j + 15).
    static func scales(_ block: UnsafeRawPointer) -> __m256i
    /// The grid magnitudes of sub-block k (weights 32k…32k + 31).
    static func magnitudes(_ grid: UnsafePointer<Grid>, _ block: UnsafeRawPointer, _ k: Int) -> __m256i
    #if JINDOU_AVX512
    /// The grid magnitudes of sub-blocks 2j and 2j + 1.
    static func magnitudePair(_ grid: UnsafePointer<Grid>, _ block: UnsafeRawPointer, _ j: Int) -> __m512i
    /// Whether the one-token kernel takes two sub-blocks per 512-bit register — false where
    /// joining the two lookups' halves costs more than the wider registers save (measured).
    static var pairsPerRegister: Bool { get }
    #endif
}

#if JINDOU_AVX512
extension SignedGridFormat {
    static var pairsPerRegister: Bool { true }
}
#endif

/// The row kernels of a `SignedGridFormat`.
enum SignedGridKernel<F: SignedGridFormat>: GridKernel {
    static var bytesPerBlock: Int { F.bytesPerBlock }

    @inline(__always)
    static func rowDot(_ row: UnsafeRawPointer, _ x: ActivationRow, superBlocks: Int) -> Float {
        #if JINDOU_AVX512
        if F.pairsPerRegister { return rowDotPairs(row, x, superBlocks: superBlocks) }
        #endif
        let grid = F.grid
        var acc = _mm256_setzero_ps()
        for i in 0..<superBlocks {
            let p = row + F.bytesPerBlock &* i, q8 = UnsafeRawPointer(x.values + 256 &* i)
            let signs = signHalves(F.signs(p))
            let scales = scaleHalves(F.scales(p))
            @inline(__always) func part(_ k: Int) -> __m256i {
                let q = negate(loadBytes32(q8 + 32 &* k), where: signMask(signs, k))
                return _mm256_madd_epi16(_mm256_maddubs_epi16(F.magnitudes(grid, p, k), q), subBlockScales(scales, k))
            }
            let sumi = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(part(0), part(1)), _mm256_add_epi32(part(2), part(3))),
                                        _mm256_add_epi32(_mm256_add_epi32(part(4), part(5)), _mm256_add_epi32(part(6), part(7))))
            let d = Float(halfBits: p.loadUnaligned(as: UInt16.self)) * x.scales[i]
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(d), acc)
        }
        return F.multiplier * sumLanes(acc)
    }

    #if JINDOU_AVX512
    /// `rowDot` with two sub-blocks per register and the signs as a 64-bit mask.
    @inline(__always)
    static func rowDotPairs(_ row: UnsafeRawPointer, _ x: ActivationRow, superBlocks: Int) -> Float {
        let grid = F.grid
        var acc = _mm512_setzero_ps()
        let zero = _mm512_setzero_si512()
        for i in 0..<superBlocks {
            let p = row + F.bytesPerBlock &* i, q8 = UnsafeRawPointer(x.values + 256 &* i)
            let signs = unsafeBitCast(F.signs(p), to: SIMD4<UInt64>.self)
            let scales = _mm512_castsi256_si512(F.scales(p))
            @inline(__always) func pair(_ j: Int) -> __m512i {
                let q = _mm512_loadu_si512(q8 + 64 &* j)
                let dot = _mm512_maddubs_epi16(F.magnitudePair(grid, p, j), _mm512_mask_sub_epi8(q, signs[j], zero, q))
                return _mm512_madd_epi16(dot, pairScales(scales, j))
            }
            let sumi = _mm512_add_epi32(_mm512_add_epi32(pair(0), pair(1)), _mm512_add_epi32(pair(2), pair(3)))
            let d = Float(halfBits: p.loadUnaligned(as: UInt16.self)) * x.scales[i]
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(d), acc)
        }
        return F.multiplier * _mm512_reduce_add_ps(acc)
    }
    #endif

    /// Offset 64: grid magnitudes are ≤ 62, so w + 64 ∈ [2, 126].
    @inline(__always)
    static func decode(_ p: UnsafeRawPointer, into tile: UnsafeMutableRawPointer) {
        let grid = F.grid
        let scales16 = F.scales(p)
        #if JINDOU_AVX512
        let zero = _mm512_setzero_si512(), offset = _mm512_set1_epi8(64)
        let signs = unsafeBitCast(F.signs(p), to: SIMD4<UInt64>.self)
        let scales = _mm512_castsi256_si512(scales16)
        @inline(__always) func pair(_ j: Int) {
            let g = F.magnitudePair(grid, p, j)
            _mm512_storeu_si512(tile + 64 &* j, _mm512_add_epi8(_mm512_mask_sub_epi8(g, signs[j], zero, g), offset))
            _mm512_storeu_si512(tile + (GridTile.scaleWords &+ 64 &* j), pairScales(scales, j))
        }
        pair(0); pair(1); pair(2); pair(3)
        #else
        let offset = _mm256_set1_epi8(64)
        let signs = signHalves(F.signs(p))
        let scales = scaleHalves(scales16)
        @inline(__always) func part(_ k: Int) {
            let w = negate(F.magnitudes(grid, p, k), where: signMask(signs, k))
            storeBytes32(tile + 32 &* k, _mm256_add_epi8(w, offset))
            storeBytes32(tile + (GridTile.scaleWords &+ 32 &* k), subBlockScales(scales, k))
        }
        part(0); part(1); part(2); part(3); part(4); part(5); part(6); part(7)
        #endif
        storeBytes32(tile + GridTile.coefficients, _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(scales16, 6)))
        (tile + GridTile.scale).storeBytes(of: F.multiplier * Float(halfBits: p.loadUnaligned(as: UInt16.self)), as: Float.self)
    }
}

/// IQ2_XXS: block = f16 d, then per 32 weights four grid-index bytes and a u32 of four 7-bit
/// sign indices (bits 0…27) and a 4-bit scale s; w = d · (2s + 1) · grid · sign / 8.
enum IQ2_XXSFormat: SignedGridFormat {
    static var bytesPerBlock: Int { 66 }
    static var grid: UnsafePointer<UInt64> { GGMLTables.iq2xxsGrid.base }
    static var multiplier: Float { 0.125 }

    @inline(__always)
    static func signs(_ p: UnsafeRawPointer) -> SIMD8<UInt32> { evenSignBits(oddWords(p + 2)) }

    @inline(__always)
    static func scales(_ p: UnsafeRawPointer) -> __m256i { perSixteen((oddWords(p + 2) &>> 28) &* 2 &+ 1) }

    @inline(__always)
    static func magnitudes(_ grid: UnsafePointer<UInt64>, _ p: UnsafeRawPointer, _ k: Int) -> __m256i {
        gridQuad(grid, p + (2 &+ 8 &* k))
    }

    #if JINDOU_AVX512
    @inline(__always)
    static func magnitudePair(_ grid: UnsafePointer<UInt64>, _ p: UnsafeRawPointer, _ j: Int) -> __m512i {
        gridOctet(grid, p + (2 &+ 16 &* j), p + (10 &+ 16 &* j))
    }
    #endif
}

/// IQ2_XS: block = f16 d, 32 u16 (per 8 weights a 9-bit grid index and a 7-bit sign index),
/// 8 bytes of two 4-bit scales (per 16 weights); w = d · (2s + 1) · grid · sign / 8.
enum IQ2_XSFormat: SignedGridFormat {
    static var bytesPerBlock: Int { 74 }
    static var grid: UnsafePointer<UInt64> { GGMLTables.iq2xsGrid.base }
    static var multiplier: Float { 0.125 }

    @inline(__always)
    static func signs(_ p: UnsafeRawPointer) -> SIMD8<UInt32> {
        #if JINDOU_AVX512
        let seven = _mm512_cvtepi16_epi8(_mm512_srli_epi16(_mm512_loadu_si512(p + 2), 9))
        #else
        let packed = _mm256_packus_epi16(_mm256_srli_epi16(loadBytes32(p + 2), 9), _mm256_srli_epi16(loadBytes32(p + 34), 9))
        let seven = _mm256_permutevar8x32_epi32(packed, unsafeBitCast(SIMD8<Int32>(0, 1, 4, 5, 2, 3, 6, 7), to: __m256i.self))
        #endif
        return unsafeBitCast(withParityBit(seven), to: SIMD8<UInt32>.self)
    }

    @inline(__always)
    static func scales(_ p: UnsafeRawPointer) -> __m256i { nibbleScales(p + 66) }

    @inline(__always)
    static func magnitudes(_ grid: UnsafePointer<UInt64>, _ p: UnsafeRawPointer, _ k: Int) -> __m256i {
        @inline(__always) func entry(_ l: Int) -> UInt64 {
            grid[Int(p.loadUnaligned(fromByteOffset: 2 &+ 8 &* k &+ 2 &* l, as: UInt16.self) & 511)]
        }
        return unsafeBitCast(SIMD4<UInt64>(entry(0), entry(1), entry(2), entry(3)), to: __m256i.self)
    }

    #if JINDOU_AVX512
    @inline(__always)
    static func magnitudePair(_ grid: UnsafePointer<UInt64>, _ p: UnsafeRawPointer, _ j: Int) -> __m512i {
        @inline(__always) func entry(_ l: Int) -> UInt64 {
            grid[Int(p.loadUnaligned(fromByteOffset: 2 &+ 16 &* j &+ 2 &* l, as: UInt16.self) & 511)]
        }
        return unsafeBitCast(SIMD8<UInt64>(entry(0), entry(1), entry(2), entry(3), entry(4), entry(5), entry(6), entry(7)),
                             to: __m512i.self)
    }
    #endif
}

/// IQ2_S: block = f16 d, 32 grid-index bytes, 32 sign bytes (one bit per weight), 8 bytes of
/// 2-bit index highs (per 32 weights), 8 bytes of two 4-bit scales; w as IQ2_XS.
enum IQ2_SFormat: SignedGridFormat {
    static var bytesPerBlock: Int { 82 }
    static var grid: UnsafePointer<UInt64> { GGMLTables.iq2sGrid.base }
    static var multiplier: Float { 0.125 }

    @inline(__always)
    static func signs(_ p: UnsafeRawPointer) -> SIMD8<UInt32> { p.loadUnaligned(fromByteOffset: 34, as: SIMD8<UInt32>.self) }

    @inline(__always)
    static func scales(_ p: UnsafeRawPointer) -> __m256i { nibbleScales(p + 74) }

    /// The four 10-bit grid indices of sub-block k as 16-bit fields.
    @inline(__always)
    static func indices(_ p: UnsafeRawPointer, _ k: Int) -> UInt64 {
        let low = UInt64(p.loadUnaligned(fromByteOffset: 2 &+ 4 &* k, as: UInt32.self))
        let high = UInt64(p.load(fromByteOffset: 66 &+ k, as: UInt8.self))
        return _pdep_u64(low, 0x00FF_00FF_00FF_00FF) | _pdep_u64(high, 0x0300_0300_0300_0300)
    }

    @inline(__always)
    static func magnitudes(_ grid: UnsafePointer<UInt64>, _ p: UnsafeRawPointer, _ k: Int) -> __m256i {
        gridQuad16(grid, indices(p, k))
    }

    #if JINDOU_AVX512
    @inline(__always)
    static func magnitudePair(_ grid: UnsafePointer<UInt64>, _ p: UnsafeRawPointer, _ j: Int) -> __m512i {
        gridOctet16(grid, indices(p, 2 &* j), indices(p, 2 &* j &+ 1))
    }
    #endif
}
#endif
