// SIMD kernels of the 3-bit grid formats IQ3_XXS and IQ3_S over Q8_K activations (ggml-cpu's
// `ggml_vec_dot_iq3_xxs_q8_K`/`_iq3_s_q8_K`): the sign-and-magnitude kernel of
// GridKernelsIQ2.swift with 4-byte grid entries (one lookup per 4 weights, twice IQ2's).
//
// Bytes read per row: columns × 98/256 (IQ3_XXS) or 110/256 (IQ3_S); grids of 1–2 KB.

#if JINDOU_AVX2
import _Builtin_intrinsics.intel
import JindouTensors

/// Eight 4-byte grid entries (32 weights) from eight index bytes at `indices`.
@inline(__always)
func gridOctetBytes(_ grid: UnsafePointer<UInt32>, _ indices: UnsafeRawPointer) -> __m256i {
    @inline(__always) func entry(_ l: Int) -> UInt32 { grid[Int(indices.load(fromByteOffset: l, as: UInt8.self))] }
    return unsafeBitCast(SIMD8<UInt32>(entry(0), entry(1), entry(2), entry(3), entry(4), entry(5), entry(6), entry(7)),
                         to: __m256i.self)
}

/// IQ3_XXS: block = f16 d, 64 grid-index bytes (one per 4 weights), then per 32 weights a
/// u32 of four 7-bit sign indices and a 4-bit scale s; w = d · (2s + 1) · grid · sign / 4.
enum IQ3_XXSFormat: SignedGridFormat {
    static var bytesPerBlock: Int { 98 }
    static var grid: UnsafePointer<UInt32> { GGMLTables.iq3xxsGrid.base }
    static var multiplier: Float { 0.25 }

    @inline(__always)
    static func signs(_ p: UnsafeRawPointer) -> SIMD8<UInt32> {
        evenSignBits(p.loadUnaligned(fromByteOffset: 66, as: SIMD8<UInt32>.self))
    }

    @inline(__always)
    static func scales(_ p: UnsafeRawPointer) -> __m256i {
        perSixteen((p.loadUnaligned(fromByteOffset: 66, as: SIMD8<UInt32>.self) &>> 28) &* 2 &+ 1)
    }

    @inline(__always)
    static func magnitudes(_ grid: UnsafePointer<UInt32>, _ p: UnsafeRawPointer, _ k: Int) -> __m256i {
        gridOctetBytes(grid, p + (2 &+ 8 &* k))
    }

    #if JINDOU_AVX512
    @inline(__always)
    static func magnitudePair(_ grid: UnsafePointer<UInt32>, _ p: UnsafeRawPointer, _ j: Int) -> __m512i {
        let low = unsafeBitCast(magnitudes(grid, p, 2 &* j), to: SIMD8<UInt32>.self)
        let high = unsafeBitCast(magnitudes(grid, p, 2 &* j &+ 1), to: SIMD8<UInt32>.self)
        return unsafeBitCast(SIMD16(lowHalf: low, highHalf: high), to: __m512i.self)
    }
    #endif
}

/// IQ3_S: block = f16 d, 64 grid-index bytes, 8 bytes of index high bits (per 32 weights),
/// 32 sign bytes (one bit per weight), 4 bytes of two 4-bit scales (per 32 weights);
/// w = d · (2s + 1) · grid · sign.
enum IQ3_SFormat: SignedGridFormat {
    static var bytesPerBlock: Int { 110 }
    static var grid: UnsafePointer<UInt32> { GGMLTables.iq3sGrid.base }
    static var multiplier: Float { 1 }

    @inline(__always)
    static func signs(_ p: UnsafeRawPointer) -> SIMD8<UInt32> { p.loadUnaligned(fromByteOffset: 74, as: SIMD8<UInt32>.self) }

    @inline(__always)
    static func scales(_ p: UnsafeRawPointer) -> __m256i {
        let packed = SIMD8<UInt32>(repeating: p.loadUnaligned(fromByteOffset: 106, as: UInt32.self))
        let nibbles = (packed &>> SIMD8<UInt32>(0, 4, 8, 12, 16, 20, 24, 28)) & 15
        return perSixteen(nibbles &* 2 &+ 1)
    }

    /// The eight 9-bit grid indices of sub-block k as two words of four 16-bit fields.
    @inline(__always)
    static func indices(_ p: UnsafeRawPointer, _ k: Int) -> (UInt64, UInt64) {
        let low = p.loadUnaligned(fromByteOffset: 2 &+ 8 &* k, as: UInt64.self)
        let high = UInt64(p.load(fromByteOffset: 66 &+ k, as: UInt8.self))
        return (_pdep_u64(low & 0xFFFF_FFFF, 0x00FF_00FF_00FF_00FF) | _pdep_u64(high, 0x0100_0100_0100_0100),
                _pdep_u64(low >> 32, 0x00FF_00FF_00FF_00FF) | _pdep_u64(high >> 4, 0x0100_0100_0100_0100))
    }

    @inline(__always)
    static func magnitudes(_ grid: UnsafePointer<UInt32>, _ p: UnsafeRawPointer, _ k: Int) -> __m256i {
        let (first, second) = indices(p, k)
        return gridOctet32(grid, first, second)
    }

    #if JINDOU_AVX512
    @inline(__always)
    static func magnitudePair(_ grid: UnsafePointer<UInt32>, _ p: UnsafeRawPointer, _ j: Int) -> __m512i {
        let low = unsafeBitCast(magnitudes(grid, p, 2 &* j), to: SIMD8<UInt32>.self)
        let high = unsafeBitCast(magnitudes(grid, p, 2 &* j &+ 1), to: SIMD8<UInt32>.self)
        return unsafeBitCast(SIMD16(lowHalf: low, highHalf: high), to: __m512i.self)
    }

    static var pairsPerRegister: Bool { false }
    #endif
}
#endif
