// Integer-dot row kernels for the 32-weight formats — Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and
// IQ4_NL — over activations rounded to Q8_0 (Q8_1 for Q4_1/Q5_1), for every x86 kernel set
// (IntegerLanes.swift: one row per register on AVX2, two on AVX-512). The shapes of
// ggml-cpu's x86 `ggml_vec_dot_q4_0_q8_0` … `ggml_vec_dot_iq4_nl_q8_0`, with three changes
// that cut the instructions per block, which is what bounds a quantised GEMV on one core:
//
// - Weights become unsigned bytes u = w + k (Q4_0: k = 8, Q5_0: 16, Q8_0/IQ4_NL with VNNI:
//   128), multiplied as they are, and k·Σx is subtracted once per eight blocks from the
//   activations' block sums (ActivationBlocks.swift) — no per-block sign flipping. Without
//   VNNI, Q8_0 and IQ4_NL keep ggml's |w| · (x signed by w) (an unsigned operand above 128
//   would saturate `vpmaddubsw`'s int16 pairs).
// - Eight blocks' integer sums are reduced to one vector (lane = block) and scaled with one
//   multiply-add by the eight blocks' d_w · d_x, instead of a convert and a multiply-add per block.
// - A row's blocks are decoded once for up to four tokens (prefill tiles).
//
// The integer sum of every block equals the scalar kernel's (BlockDots.swift) exactly; only
// the float summation order differs.
//
// Bytes read per row: rowBytes (Q4_0 0.5625, Q4_1 0.625, Q5_0 0.6875, Q5_1 0.75, Q8_0 1.0625,
// IQ4_NL 0.5625 bytes per weight); the activations (~1.1 bytes per column and token) stay in
// L1/L2. Roofline: the read bandwidth over those bytes (decode); prefill tiles aim at the
// integer-multiply throughput instead.

#if JINDOU_AVX2
import _Builtin_intrinsics.intel
import CJindouSupport
import JindouTensors

/// One 32-weight format's decoding for `LegacyKernel`.
protocol LegacyBlockDecoding {
    /// What one block decodes to (one or two `Lanes`).
    associatedtype Decoded
    static var bytesPerBlock: Int { get }
    /// log2 of the offset k the decoded unsigned weights carry (Σ u·x − k·Σx = Σ w·x);
    /// −1 for none.
    static var offsetShift: Int32 { get }
    /// Whether the format has a per-block minimum m (w = d·q + m; Q4_1, Q5_1).
    static var hasMinimum: Bool { get }
    /// The block at `w` (per row) decoded.
    static func decode(_ w: RowPair) -> Decoded
    /// Per row, 8 int32 partial sums of the block's u·x (x: the block's 32 activations).
    static func product(_ d: Decoded, _ x: Lanes) -> Lanes
}

/// Σ u·x of a block of unsigned weight bytes.
@inline(__always) private func unsignedProduct(_ u: Lanes, _ x: Lanes) -> Lanes { dotBytes(zeroLanes(), u, x) }

/// Signed weight bytes as (|w|, w) for ggml's sign trick.
struct SignedBlock {
    let magnitude: Lanes
    let signs: Lanes
    @inline(__always) init(_ w: Lanes) {
        magnitude = absBytes(w)
        signs = w
    }
    @inline(__always) func product(_ x: Lanes) -> Lanes { dotBytes(zeroLanes(), magnitude, signBytes(x, by: signs)) }
}

/// 16 bytes of nibbles per row (at `offset`) as 32 bytes: the low nibbles, then the high.
@inline(__always) private func nibbles(_ w: RowPair, _ offset: Int) -> Lanes {
    let raw = loadRowHalves(w, offset)
    return and(joinHalves(raw, shiftRightHalf16(raw, 4)), splat8(0x0F))
}

/// Per row, 0x10 in byte j where bit j of the u32 at `offset` is set (Q5's fifth bits).
@inline(__always) private func fifthBits(_ w: RowPair, _ offset: Int) -> Lanes {
    #if JINDOU_AVX512
    let bits = UInt64(w.first.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        | UInt64(w.second.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) << 32
    return _mm512_maskz_mov_epi8(bits, splat8(0x10))
    #else
    // ggml's bytes_from_bits_32: byte j gets the byte of the word holding bit j, then every
    // bit but that one is forced to 1.
    let word = _mm256_set1_epi32(Int32(bitPattern: w.first.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
    let spread = _mm256_shuffle_epi8(word, _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202,
                                                             0x0101_0101_0101_0101, 0))
    let set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, _mm256_set1_epi64x(0x7FBF_DFEF_F7FB_FDFE)), _mm256_set1_epi64x(-1))
    return and(set, splat8(0x10))
    #endif
}

enum Q4_0Decoding: LegacyBlockDecoding {
    static var bytesPerBlock: Int { 18 }
    static var offsetShift: Int32 { 3 }
    static var hasMinimum: Bool { false }
    @inline(__always) static func decode(_ w: RowPair) -> Lanes { nibbles(w, 2) }
    @inline(__always) static func product(_ d: Lanes, _ x: Lanes) -> Lanes { unsignedProduct(d, x) }
}

enum Q4_1Decoding: LegacyBlockDecoding {
    static var bytesPerBlock: Int { 20 }
    static var offsetShift: Int32 { -1 }
    static var hasMinimum: Bool { true }
    @inline(__always) static func decode(_ w: RowPair) -> Lanes { nibbles(w, 4) }
    @inline(__always) static func product(_ d: Lanes, _ x: Lanes) -> Lanes { unsignedProduct(d, x) }
}

enum Q5_0Decoding: LegacyBlockDecoding {
    static var bytesPerBlock: Int { 22 }
    static var offsetShift: Int32 { 4 }
    static var hasMinimum: Bool { false }
    @inline(__always) static func decode(_ w: RowPair) -> Lanes { or(nibbles(w, 6), fifthBits(w, 2)) }
    @inline(__always) static func product(_ d: Lanes, _ x: Lanes) -> Lanes { unsignedProduct(d, x) }
}

enum Q5_1Decoding: LegacyBlockDecoding {
    static var bytesPerBlock: Int { 24 }
    static var offsetShift: Int32 { -1 }
    static var hasMinimum: Bool { true }
    @inline(__always) static func decode(_ w: RowPair) -> Lanes { or(nibbles(w, 8), fifthBits(w, 4)) }
    @inline(__always) static func product(_ d: Lanes, _ x: Lanes) -> Lanes { unsignedProduct(d, x) }
}

#if JINDOU_VNNI
enum Q8_0Decoding: LegacyBlockDecoding {
    static var bytesPerBlock: Int { 34 }
    static var offsetShift: Int32 { 7 }
    static var hasMinimum: Bool { false }
    /// w + 128 as an unsigned byte (`vpdpbusd` has no int16 pairs to saturate).
    @inline(__always) static func decode(_ w: RowPair) -> Lanes { xor(loadRows(w, 2), splat8(-128)) }
    @inline(__always) static func product(_ d: Lanes, _ x: Lanes) -> Lanes { unsignedProduct(d, x) }
}

enum IQ4_NLDecoding: LegacyBlockDecoding {
    static var bytesPerBlock: Int { 18 }
    static var offsetShift: Int32 { 7 }
    static var hasMinimum: Bool { false }
    @inline(__always) static func decode(_ w: RowPair) -> Lanes { shuffleBytes(iq4Table(offset: 128), nibbles(w, 2)) }
    @inline(__always) static func product(_ d: Lanes, _ x: Lanes) -> Lanes { unsignedProduct(d, x) }
}
#else
enum Q8_0Decoding: LegacyBlockDecoding {
    static var bytesPerBlock: Int { 34 }
    static var offsetShift: Int32 { -1 }
    static var hasMinimum: Bool { false }
    @inline(__always) static func decode(_ w: RowPair) -> SignedBlock { SignedBlock(loadRows(w, 2)) }
    @inline(__always) static func product(_ d: SignedBlock, _ x: Lanes) -> Lanes { d.product(x) }
}

enum IQ4_NLDecoding: LegacyBlockDecoding {
    static var bytesPerBlock: Int { 18 }
    static var offsetShift: Int32 { -1 }
    static var hasMinimum: Bool { false }
    @inline(__always) static func decode(_ w: RowPair) -> SignedBlock { SignedBlock(shuffleBytes(iq4Table(offset: 0), nibbles(w, 2))) }
    @inline(__always) static func product(_ d: SignedBlock, _ x: Lanes) -> Lanes { d.product(x) }
}
#endif

/// `kvalues_iq4nl` + `offset` (ggml-common.h: −127 … 113) in every 128-bit lane, for `vpshufb`.
@inline(__always) func iq4Table(offset: Int) -> Lanes {
    @inline(__always) func v(_ x: Int) -> Int8 { Int8(truncatingIfNeeded: x &+ Int(offset)) }
    #if JINDOU_AVX512
    return _mm512_broadcast_i32x4(_mm_setr_epi8(v(-127), v(-104), v(-83), v(-65), v(-49), v(-35), v(-22), v(-10),
                                                v(1), v(13), v(25), v(38), v(53), v(69), v(89), v(113)))
    #else
    return _mm256_broadcastsi128_si256(_mm_setr_epi8(v(-127), v(-104), v(-83), v(-65), v(-49), v(-35), v(-22), v(-10),
                                                     v(1), v(13), v(25), v(38), v(53), v(69), v(89), v(113)))
    #endif
}

/// The row kernel of a 32-weight format `D` (see the file comment).
enum LegacyKernel<D: LegacyBlockDecoding>: IntegerRowKernel {
    @inline(__always)
    static func dots<T: TokenTile>(_: T.Type, _ w: RowPair, _ x: TokenRows, blocks: Int) -> TokenAccumulators<SIMD2<Float>> {
        let size = D.bytesPerBlock
        var acc = TokenAccumulators(zeroFloats()), minimums = TokenAccumulators(zeroFloats())
        var b = 0
        while b &+ 8 <= blocks {
            let p = w + b &* size
            // About 2 KiB ahead (a row of 2048 Q8_0 weights; two of Q4_0), every line of the
            // eight blocks once or twice.
            for line in stride(from: 0, to: 8 &* size, by: 64) { prefetchRows(p, line) }
            let d0 = D.decode(p), d1 = D.decode(p + size), d2 = D.decode(p + 2 &* size), d3 = D.decode(p + 3 &* size)
            let d4 = D.decode(p + 4 &* size), d5 = D.decode(p + 5 &* size), d6 = D.decode(p + 6 &* size), d7 = D.decode(p + 7 &* size)
            let weightScales = halfScales8(p, offset: 0, stride: size)
            let weightMinimums = D.hasMinimum ? halfScales8(p, offset: 2, stride: size) : zeroFloats()
            forEachToken(T.self) { t in
                let xq = UnsafeRawPointer(x[t].values) + 32 &* b
                var totals = laneTotals(D.product(d0, loadShared(xq)), D.product(d1, loadShared(xq + 32)),
                                        D.product(d2, loadShared(xq + 64)), D.product(d3, loadShared(xq + 96)),
                                        D.product(d4, loadShared(xq + 128)), D.product(d5, loadShared(xq + 160)),
                                        D.product(d6, loadShared(xq + 192)), D.product(d7, loadShared(xq + 224)))
                if D.offsetShift >= 0 {
                    totals = sub32(totals, shiftLeft32(loadSharedInt16x8(x[t].blockSums + b), D.offsetShift))
                }
                acc[t] = multiplyAdd(toFloats(totals), multiply(weightScales, loadSharedFloats(x[t].scales + b)), acc[t])
                if D.hasMinimum { minimums[t] = multiplyAdd(weightMinimums, loadSharedFloats(x[t].sums + b), minimums[t]) }
            }
            b &+= 8
        }
        var result = TokenAccumulators(SIMD2<Float>())
        forEachToken(T.self) { t in result[t] = rowSums(acc[t]) + (D.hasMinimum ? rowSums(minimums[t]) : SIMD2()) }
        // The last blocks of a row whose block count is not a multiple of 8, one at a time.
        while b < blocks {
            let p = w + b &* size
            let decoded = D.decode(p)
            let d = SIMD2(Float(halfBits: p.first.loadUnaligned(as: UInt16.self)), Float(halfBits: p.second.loadUnaligned(as: UInt16.self)))
            let m = D.hasMinimum ? SIMD2(Float(halfBits: p.first.loadUnaligned(fromByteOffset: 2, as: UInt16.self)),
                                         Float(halfBits: p.second.loadUnaligned(fromByteOffset: 2, as: UInt16.self))) : SIMD2()
            forEachToken(T.self) { t in
                var total = rowSums(D.product(decoded, loadShared(UnsafeRawPointer(x[t].values) + 32 &* b)))
                if D.offsetShift >= 0 { total &-= SIMD2(repeating: Int32(x[t].blockSums[b]) << D.offsetShift) }
                result[t] += SIMD2<Float>(total) * d * x[t].scales[b]
                if D.hasMinimum { result[t] += m * x[t].sums[b] }
            }
            b &+= 1
        }
        return result
    }
}

/// Runs the SIMD kernel of a 32-weight format; false if `format` is not one.
@inline(__always)
func legacyRowsSIMD(_ format: BlockFormat, _ a: QuantizedActivations, weight: WeightMatrix, rows: Range<Int>,
                    y: UnsafeMutablePointer<Float>, outputStride: Int) -> Bool {
    switch format {
    case .q4_0: integerRows(LegacyKernel<Q4_0Decoding>.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .q4_1: integerRows(LegacyKernel<Q4_1Decoding>.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .q5_0: integerRows(LegacyKernel<Q5_0Decoding>.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .q5_1: integerRows(LegacyKernel<Q5_1Decoding>.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .q8_0: integerRows(LegacyKernel<Q8_0Decoding>.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .iq4_nl: integerRows(LegacyKernel<IQ4_NLDecoding>.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    default: return false
    }
    return true
}
#endif
