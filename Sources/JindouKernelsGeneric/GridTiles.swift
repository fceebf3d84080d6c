// The multi-token path of the grid/ternary kernels (GridRowsSIMD.swift): each row is decoded
// once per call into a table of unsigned int8 weights, and every token runs the same integer
// dot over that table, so the grid lookups, signs and scales are paid once per row instead
// of once per token and row.
//
// Decoded super-block (256 weights, `GridTile.stride` bytes):
//   0 ..< 256   u: the integer weight w plus the format's offset o (w + o ≥ 0, ≤ 127), so
//               `vpmaddubsw` (unsigned × signed) takes it directly and pairs never saturate
//               (2 · 127 · 127 < 2¹⁵);
//   256 ..< 512 the int16 scale of every byte pair (128 words: word k covers bytes 2k, 2k+1),
//               so `vpmaddwd` reads it straight from the table;
//   512 ..< 544 sixteen int16 coefficients c_j of the activations' 16-value sums (Q8_K
//               `bsums`): −o · scale_j, which takes the offset back out exactly;
//   544         the float the integer sum is scaled by: the block's d with the format's
//               constant (IQ2's 1/8, IQ1's 1/8 of the δ folding); the dot multiplies in
//               the activation block's d.
// Per token and super-block: Σ_pairs scale · (u · q) + Σ_j c_j · bsum_j is the scalar
// kernel's integer sum, exactly.
//
// Bytes: the table is 8 super-blocks (4.6 KB, on the stack). Tokens go through it four at a
// time, so each 544-byte table step is read once per four tokens' 256 activation bytes; from
// 32 tokens (AVX-512) two rows' tables are read together, so each activation vector serves
// two rows. One token alone would be bound by its loads (16 vectors per super-block).

#if JINDOU_AVX2
import _Builtin_intrinsics.intel
import JindouTensors

/// A format's kernels for the grid rows: the fused one-token row dot, and the decoder that
/// writes one super-block in the tile layout.
protocol GridKernel {
    /// Bytes of one 256-weight block.
    static var bytesPerBlock: Int { get }
    /// Σ w·x of `superBlocks` blocks from `row` with one token's Q8_K activations.
    static func rowDot(_ row: UnsafeRawPointer, _ x: ActivationRow, superBlocks: Int) -> Float
    /// Writes one block in the tile layout (see the file comment) at `tile`.
    static func decode(_ block: UnsafeRawPointer, into tile: UnsafeMutableRawPointer)
}

enum GridTile {
    /// Bytes per decoded super-block.
    static let stride = 576
    static let scaleWords = 256
    static let coefficients = 512
    static let scale = 544
    /// Super-blocks decoded at once (the stack table's capacity).
    static let chunk = 8
}

typealias Bytes512 = (SIMD64<UInt8>, SIMD64<UInt8>, SIMD64<UInt8>, SIMD64<UInt8>,
                      SIMD64<UInt8>, SIMD64<UInt8>, SIMD64<UInt8>, SIMD64<UInt8>)
/// The stack table of `GridTile.chunk` decoded super-blocks (a fixed-size value, so it
/// lives in the kernel's frame: nothing is allocated).
typealias GridTileStorage = (Bytes512, Bytes512, Bytes512, Bytes512, Bytes512, Bytes512, Bytes512, Bytes512, Bytes512)

/// Runs `body` with the address of a `GridTileStorage` table in this frame.
@inline(__always)
func withGridTable(_ body: (UnsafeMutableRawPointer) -> Void) {
    var storage: GridTileStorage = (
        (.zero, .zero, .zero, .zero, .zero, .zero, .zero, .zero), (.zero, .zero, .zero, .zero, .zero, .zero, .zero, .zero),
        (.zero, .zero, .zero, .zero, .zero, .zero, .zero, .zero), (.zero, .zero, .zero, .zero, .zero, .zero, .zero, .zero),
        (.zero, .zero, .zero, .zero, .zero, .zero, .zero, .zero), (.zero, .zero, .zero, .zero, .zero, .zero, .zero, .zero),
        (.zero, .zero, .zero, .zero, .zero, .zero, .zero, .zero), (.zero, .zero, .zero, .zero, .zero, .zero, .zero, .zero),
        (.zero, .zero, .zero, .zero, .zero, .zero, .zero, .zero))
    withUnsafeMutableBytes(of: &storage) { body($0.baseAddress!) }
}

@inline(__always)
func loadBytes32(_ pointer: UnsafeRawPointer) -> __m256i {
    _mm256_loadu_si256(pointer.assumingMemoryBound(to: __m256i.self))
}

@inline(__always)
func storeBytes32(_ pointer: UnsafeMutableRawPointer, _ value: __m256i) {
    _mm256_storeu_si256(pointer.assumingMemoryBound(to: __m256i.self), value)
}

@inline(__always)
func sumLanes(_ v: __m256) -> Float {
    v.sum()
}

/// Rows `rows` of `y = x · Wᵀ` for a grid format: the fused kernel for one token, the
/// decoded table for several.
@inline(__always)
func gridRows<K: GridKernel>(_: K.Type, _ a: QuantizedActivations, weight: WeightMatrix, rows: Range<Int>,
                             y: UnsafeMutablePointer<Float>, outputStride: Int) {
    let superBlocks = weight.columns / 256
    if a.tokens < gridTableTokens {
        // The one-token kernel per token: a token's row is then bit for bit what a one-token
        // call gives (the table path below adds its floats in another order), which keeps
        // speculative verification and small decode batches on one-token decoding's tokens.
        for t in 0..<a.tokens {
            let x = a.row(t)
            for r in rows { y[t &* outputStride &+ r] = K.rowDot(weight.rowPointer(r), x, superBlocks: superBlocks) }
        }
        return
    }
    /// Writes `count` tokens' sums `s` of row `r` (added to the earlier tables' when `first > 0`).
    @inline(__always) func store(_ s: SIMD4<Float>, row r: Int, tokens t: Int, count n: Int, first: Int) {
        for i in 0..<n {
            let index = (t &+ i) &* outputStride &+ r
            y[index] = first == 0 ? s[i] : y[index] + s[i]
        }
    }
    /// Tokens `t`, `t + 1`, … `t + n − 1` (the unused slots repeat the last).
    @inline(__always) func tokenRows(_ t: Int, _ n: Int) -> GridTokenRows {
        (a.row(t), a.row(t &+ min(1, n &- 1)), a.row(t &+ min(2, n &- 1)), a.row(t &+ min(3, n &- 1)))
    }
    /// One row through the table, four tokens per pass: each table vector is loaded once for
    /// four activation rows (the loads, not the multiplies, bound one token's pass).
    @inline(__always) func oneRow(_ r: Int, _ tile: UnsafeMutableRawPointer) {
        let row = weight.rowPointer(r)
        var first = 0
        while first < superBlocks {
            let count = min(GridTile.chunk, superBlocks &- first)
            for b in 0..<count { K.decode(row + (first &+ b) &* K.bytesPerBlock, into: tile + b &* GridTile.stride) }
            var t = 0
            while t < a.tokens {
                let n = min(4, a.tokens &- t), x = tokenRows(t, n), table = UnsafeRawPointer(tile)
                let s = switch n {
                case 1: gridTileDots(table, x, count: 1, first: first, blocks: count)
                case 2: gridTileDots(table, x, count: 2, first: first, blocks: count)
                case 3: gridTileDots(table, x, count: 3, first: first, blocks: count)
                default: gridTileDots(table, x, count: 4, first: first, blocks: count)
                }
                store(s, row: r, tokens: t, count: n, first: first)
                t &+= n
            }
            first &+= count
        }
    }
    #if JINDOU_AVX512
    // Many tokens (prefill): two rows per pass as well, so each activation vector is loaded
    // once for two rows (at 64 tokens the activations no longer fit in L1). Measured faster
    // from 32 tokens (IQ2_XXS, 64 tokens: 89 -> 112 G weight-tokens/s), slower at 8 and 16.
    if a.tokens >= 32 {
        withGridTable { tileA in
            withGridTable { tileB in
                var r = rows.lowerBound
                while r &+ 2 <= rows.upperBound {
                    let rowA = weight.rowPointer(r), rowB = weight.rowPointer(r &+ 1)
                    var first = 0
                    while first < superBlocks {
                        let count = min(GridTile.chunk, superBlocks &- first)
                        for b in 0..<count {
                            K.decode(rowA + (first &+ b) &* K.bytesPerBlock, into: tileA + b &* GridTile.stride)
                            K.decode(rowB + (first &+ b) &* K.bytesPerBlock, into: tileB + b &* GridTile.stride)
                        }
                        var t = 0
                        while t < a.tokens {
                            let n = min(4, a.tokens &- t), x = tokenRows(t, n)
                            let (sA, sB) = switch n {
                            case 1: gridTileDots(UnsafeRawPointer(tileA), UnsafeRawPointer(tileB), x, count: 1, first: first, blocks: count)
                            case 2: gridTileDots(UnsafeRawPointer(tileA), UnsafeRawPointer(tileB), x, count: 2, first: first, blocks: count)
                            case 3: gridTileDots(UnsafeRawPointer(tileA), UnsafeRawPointer(tileB), x, count: 3, first: first, blocks: count)
                            default: gridTileDots(UnsafeRawPointer(tileA), UnsafeRawPointer(tileB), x, count: 4, first: first, blocks: count)
                            }
                            store(sA, row: r, tokens: t, count: n, first: first)
                            store(sB, row: r &+ 1, tokens: t, count: n, first: first)
                            t &+= n
                        }
                        first &+= count
                    }
                    r &+= 2
                }
                if r < rows.upperBound { oneRow(r, tileA) }
            }
        }
        return
    }
    #endif
    withGridTable { tile in
        for r in rows { oneRow(r, tile) }
    }
}

#if JINDOU_AVX512
/// The sums of `count` (1…4) tokens over `blocks` decoded super-blocks of two rows (tables
/// `tileA`, `tileB`): each activation vector serves both rows, each table vector four tokens.
@inline(__always)
func gridTileDots(_ tileA: UnsafeRawPointer, _ tileB: UnsafeRawPointer, _ x: GridTokenRows, count: Int, first: Int,
                  blocks: Int) -> (SIMD4<Float>, SIMD4<Float>) {
    var a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0
    for b in 0..<blocks {
        let ta = tileA + b &* GridTile.stride, tb = tileB + b &* GridTile.stride, block = first &+ b
        @inline(__always) func load(_ t: UnsafeRawPointer, _ offset: Int) -> __m512i { _mm512_loadu_si512(t + offset) }
        let ua0 = load(ta, 0), ua1 = load(ta, 64), ua2 = load(ta, 128), ua3 = load(ta, 192)
        let ub0 = load(tb, 0), ub1 = load(tb, 64), ub2 = load(tb, 128), ub3 = load(tb, 192)
        let w = GridTile.scaleWords
        let wa0 = load(ta, w), wa1 = load(ta, w &+ 64), wa2 = load(ta, w &+ 128), wa3 = load(ta, w &+ 192)
        let wb0 = load(tb, w), wb1 = load(tb, w &+ 64), wb2 = load(tb, w &+ 128), wb3 = load(tb, w &+ 192)
        let ca = loadBytes32(ta + GridTile.coefficients), cb = loadBytes32(tb + GridTile.coefficients)
        let da = ta.load(fromByteOffset: GridTile.scale, as: Float.self), db = tb.load(fromByteOffset: GridTile.scale, as: Float.self)
        @inline(__always) func token(_ x: ActivationRow, _ accA: inout __m512, _ accB: inout __m512) {
            let q = UnsafeRawPointer(x.values + 256 &* block)
            let q0 = _mm512_loadu_si512(q), q1 = _mm512_loadu_si512(q + 64), q2 = _mm512_loadu_si512(q + 128), q3 = _mm512_loadu_si512(q + 192)
            @inline(__always) func term(_ u: __m512i, _ q: __m512i, _ w: __m512i) -> __m512i {
                _mm512_madd_epi16(_mm512_maddubs_epi16(u, q), w)
            }
            let sa = _mm512_add_epi32(_mm512_add_epi32(term(ua0, q0, wa0), term(ua1, q1, wa1)), _mm512_add_epi32(term(ua2, q2, wa2), term(ua3, q3, wa3)))
            let sb = _mm512_add_epi32(_mm512_add_epi32(term(ub0, q0, wb0), term(ub1, q1, wb1)), _mm512_add_epi32(term(ub2, q2, wb2), term(ub3, q3, wb3)))
            let sums = loadBytes32(UnsafeRawPointer(x.blockSums + 16 &* block))
            let corrA = _mm512_castsi256_si512(_mm256_madd_epi16(sums, ca)), corrB = _mm512_castsi256_si512(_mm256_madd_epi16(sums, cb))
            let dx = x.scales[block]
            accA = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_mask_add_epi32(sa, 0x00FF, sa, corrA)), _mm512_set1_ps(da * dx), accA)
            accB = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_mask_add_epi32(sb, 0x00FF, sb, corrB)), _mm512_set1_ps(db * dx), accB)
        }
        token(x.0, &a0, &b0)
        if count > 1 { token(x.1, &a1, &b1) }
        if count > 2 { token(x.2, &a2, &b2) }
        if count > 3 { token(x.3, &a3, &b3) }
    }
    return (SIMD4(_mm512_reduce_add_ps(a0), _mm512_reduce_add_ps(a1), _mm512_reduce_add_ps(a2), _mm512_reduce_add_ps(a3)),
            SIMD4(_mm512_reduce_add_ps(b0), _mm512_reduce_add_ps(b1), _mm512_reduce_add_ps(b2), _mm512_reduce_add_ps(b3)))
}
#endif

/// Four tokens' activation rows (where fewer are used, the rest repeat one of them).
typealias GridTokenRows = (ActivationRow, ActivationRow, ActivationRow, ActivationRow)

/// The Σ of `count` (1…4) tokens over `blocks` decoded super-blocks (activation blocks
/// `first…`).
@inline(__always)
func gridTileDots(_ tile: UnsafeRawPointer, _ x: GridTokenRows, count: Int, first: Int, blocks: Int) -> SIMD4<Float> {
    #if JINDOU_AVX512
    var acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0
    for b in 0..<blocks {
        let t = tile + b &* GridTile.stride, block = first &+ b
        let u0 = _mm512_loadu_si512(t), u1 = _mm512_loadu_si512(t + 64), u2 = _mm512_loadu_si512(t + 128), u3 = _mm512_loadu_si512(t + 192)
        let w0 = _mm512_loadu_si512(t + GridTile.scaleWords), w1 = _mm512_loadu_si512(t + (GridTile.scaleWords &+ 64))
        let w2 = _mm512_loadu_si512(t + (GridTile.scaleWords &+ 128)), w3 = _mm512_loadu_si512(t + (GridTile.scaleWords &+ 192))
        let c = loadBytes32(t + GridTile.coefficients), d = t.load(fromByteOffset: GridTile.scale, as: Float.self)
        @inline(__always) func token(_ x: ActivationRow, _ acc: inout __m512) {
            let q = UnsafeRawPointer(x.values + 256 &* block)
            let s01 = _mm512_add_epi32(_mm512_madd_epi16(_mm512_maddubs_epi16(u0, _mm512_loadu_si512(q)), w0),
                                       _mm512_madd_epi16(_mm512_maddubs_epi16(u1, _mm512_loadu_si512(q + 64)), w1))
            let s23 = _mm512_add_epi32(_mm512_madd_epi16(_mm512_maddubs_epi16(u2, _mm512_loadu_si512(q + 128)), w2),
                                       _mm512_madd_epi16(_mm512_maddubs_epi16(u3, _mm512_loadu_si512(q + 192)), w3))
            let s = _mm512_add_epi32(s01, s23)
            // The activation-sum correction into the low 8 lanes (a masked add, not a zero-extension).
            let correction = _mm512_castsi256_si512(_mm256_madd_epi16(loadBytes32(UnsafeRawPointer(x.blockSums + 16 &* block)), c))
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_mask_add_epi32(s, 0x00FF, s, correction)), _mm512_set1_ps(d * x.scales[block]), acc)
        }
        token(x.0, &acc0)
        if count > 1 { token(x.1, &acc1) }
        if count > 2 { token(x.2, &acc2) }
        if count > 3 { token(x.3, &acc3) }
    }
    return SIMD4(_mm512_reduce_add_ps(acc0), _mm512_reduce_add_ps(acc1), _mm512_reduce_add_ps(acc2), _mm512_reduce_add_ps(acc3))
    #else
    var acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0
    for b in 0..<blocks {
        let t = tile + b &* GridTile.stride, block = first &+ b
        let q0 = UnsafeRawPointer(x.0.values + 256 &* block), q1 = UnsafeRawPointer(x.1.values + 256 &* block)
        let q2 = UnsafeRawPointer(x.2.values + 256 &* block), q3 = UnsafeRawPointer(x.3.values + 256 &* block)
        let c = loadBytes32(t + GridTile.coefficients)
        var s0 = _mm256_madd_epi16(loadBytes32(UnsafeRawPointer(x.0.blockSums + 16 &* block)), c), s1 = s0, s2 = s0, s3 = s0
        if count > 1 { s1 = _mm256_madd_epi16(loadBytes32(UnsafeRawPointer(x.1.blockSums + 16 &* block)), c) }
        if count > 2 { s2 = _mm256_madd_epi16(loadBytes32(UnsafeRawPointer(x.2.blockSums + 16 &* block)), c) }
        if count > 3 { s3 = _mm256_madd_epi16(loadBytes32(UnsafeRawPointer(x.3.blockSums + 16 &* block)), c) }
        for k in 0..<8 {
            let u = loadBytes32(t + 32 &* k), w = loadBytes32(t + (GridTile.scaleWords &+ 32 &* k))
            s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(u, loadBytes32(q0 + 32 &* k)), w))
            if count > 1 { s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_maddubs_epi16(u, loadBytes32(q1 + 32 &* k)), w)) }
            if count > 2 { s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(_mm256_maddubs_epi16(u, loadBytes32(q2 + 32 &* k)), w)) }
            if count > 3 { s3 = _mm256_add_epi32(s3, _mm256_madd_epi16(_mm256_maddubs_epi16(u, loadBytes32(q3 + 32 &* k)), w)) }
        }
        let d = t.load(fromByteOffset: GridTile.scale, as: Float.self)
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_set1_ps(d * x.0.scales[block]), acc0)
        if count > 1 { acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_set1_ps(d * x.1.scales[block]), acc1) }
        if count > 2 { acc2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s2), _mm256_set1_ps(d * x.2.scales[block]), acc2) }
        if count > 3 { acc3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s3), _mm256_set1_ps(d * x.3.scales[block]), acc3) }
    }
    return SIMD4(sumLanes(acc0), sumLanes(acc1), sumLanes(acc2), sumLanes(acc3))
    #endif
}

// MARK: - Shared pieces of the grid decoders

/// Bit 7 of every byte set to the parity of bits 0…6: ggml's `ksigns_iq2xs` stores 7 of 8
/// signs and the 8th makes the number of minus signs even (computed with a nibble-parity
/// shuffle instead of a table lookup per 8 weights).
@inline(__always)
func withParityBit(_ seven: __m256i) -> __m256i {
    let nibbles = _mm256_set1_epi8(0x0F)
    // 0x80 where the nibble has odd parity.
    let parity = _mm256_setr_epi8(0, -128, -128, 0, -128, 0, 0, -128, -128, 0, 0, -128, 0, -128, -128, 0,
                                  0, -128, -128, 0, -128, 0, 0, -128, -128, 0, 0, -128, 0, -128, -128, 0)
    let odd = _mm256_xor_si256(_mm256_shuffle_epi8(parity, _mm256_and_si256(seven, nibbles)),
                               _mm256_shuffle_epi8(parity, _mm256_and_si256(_mm256_srli_epi16(seven, 4), nibbles)))
    return _mm256_or_si256(seven, odd)
}

/// The 32 sign bytes of a super-block from its eight 32-bit words of four 7-bit sign
/// indices each (IQ2_XXS, IQ3_XXS): byte l of word k has bit j set when weight 32k + 8l + j is
/// negative.
@inline(__always)
func evenSignBits(_ words: SIMD8<UInt32>) -> SIMD8<UInt32> {
    let seven = (words & 0x7F) | ((words &<< 1) & 0x7F00) | ((words &<< 2) & 0x7F_0000) | ((words &<< 3) & 0x7F00_0000)
    return unsafeBitCast(withParityBit(unsafeBitCast(seven, to: __m256i.self)), to: SIMD8<UInt32>.self)
}

/// Words 1, 3, …, 15 of the 64 bytes at `p` (without the gather LLVM would otherwise emit).
@inline(__always)
func oddWords(_ p: UnsafeRawPointer) -> SIMD8<UInt32> {
    #if JINDOU_AVX512
    let index = SIMD16<UInt32>(1, 3, 5, 7, 9, 11, 13, 15, 1, 3, 5, 7, 9, 11, 13, 15)
    let odd = _mm512_permutexvar_epi32(unsafeBitCast(index, to: __m512i.self), _mm512_loadu_si512(p))
    return unsafeBitCast(_mm512_castsi512_si256(odd), to: SIMD8<UInt32>.self)
    #else
    let odd = unsafeBitCast(SIMD8<Int32>(1, 3, 5, 7, 1, 3, 5, 7), to: __m256i.self)
    let low = _mm256_permutevar8x32_epi32(loadBytes32(p), odd), high = _mm256_permutevar8x32_epi32(loadBytes32(p + 32), odd)
    let upper = unsafeBitCast(SIMD8<Int32>(0, 0, 0, 0, -1, -1, -1, -1), to: __m256i.self)
    return unsafeBitCast(_mm256_blendv_epi8(low, high, upper), to: SIMD8<UInt32>.self)
    #endif
}

/// The sign bits of sub-block k (a 32-bit lane of `signs`) as 32 bytes, 0xFF where set.
/// `low`/`high`: lanes 0…3 / 4…7 of the sign vector copied into both 128-bit halves
/// (`signHalves`), so one in-lane shuffle spreads each byte over its 8 weights.
@inline(__always)
func signMask(_ halves: (low: __m256i, high: __m256i), _ k: Int) -> __m256i {
    let b = UInt8(truncatingIfNeeded: 4 &* (k & 3))
    var spread = SIMD32<UInt8>(repeating: b)
    for i in 8..<16 { spread[i] = b &+ 1 }
    for i in 16..<24 { spread[i] = b &+ 2 }
    for i in 24..<32 { spread[i] = b &+ 3 }
    let select = _mm256_set1_epi64x(Int64(bitPattern: 0x8040_2010_0804_0201))
    let bytes = _mm256_shuffle_epi8(k < 4 ? halves.low : halves.high, unsafeBitCast(spread, to: __m256i.self))
    return _mm256_cmpeq_epi8(_mm256_and_si256(bytes, select), select)
}

/// Lanes 0…3 and 4…7 of `signs`, each copied into both 128-bit halves (for `signMask`).
@inline(__always)
func signHalves(_ signs: SIMD8<UInt32>) -> (low: __m256i, high: __m256i) {
    let v = unsafeBitCast(signs, to: __m256i.self)
    return (_mm256_permutevar8x32_epi32(v, unsafeBitCast(SIMD8<Int32>(0, 1, 2, 3, 0, 1, 2, 3), to: __m256i.self)),
            _mm256_permutevar8x32_epi32(v, unsafeBitCast(SIMD8<Int32>(4, 5, 6, 7, 4, 5, 6, 7), to: __m256i.self)))
}

/// Sixteen per-16 scales (int16 word j: weights 16j…16j+15) from eight per-32 ones.
@inline(__always)
func perSixteen(_ scales: SIMD8<UInt32>) -> __m256i {
    let v = unsafeBitCast(scales, to: __m256i.self)
    let packed = _mm256_packus_epi32(v, v)  // [s0…s3, s0…s3 | s4…s7, s4…s7]
    return _mm256_unpacklo_epi16(packed, packed)  // [s0, s0, …, s3, s3 | s4, s4, …, s7, s7]
}

/// Sixteen per-16 scales 2n + 1 from 8 bytes of two nibbles each at `p` (IQ2_XS, IQ2_S:
/// byte b: weights 32b… in the low nibble, 32b + 16… in the high one).
@inline(__always)
func nibbleScales(_ p: UnsafeRawPointer) -> __m256i {
    let bytes = _mm_set1_epi64x(Int64(bitPattern: p.loadUnaligned(as: UInt64.self)))
    let low = _mm_and_si128(bytes, _mm_set1_epi8(0x0F)), high = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(0x0F))
    let words = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(low, high))
    return _mm256_add_epi16(_mm256_add_epi16(words, words), _mm256_set1_epi16(1))
}

/// Words 0…7 and 8…15 of sixteen per-16 scales, each copied into both 128-bit halves.
@inline(__always)
func scaleHalves(_ scales: __m256i) -> (low: __m256i, high: __m256i) {
    (_mm256_permutevar8x32_epi32(scales, unsafeBitCast(SIMD8<Int32>(0, 1, 2, 3, 0, 1, 2, 3), to: __m256i.self)),
     _mm256_permutevar8x32_epi32(scales, unsafeBitCast(SIMD8<Int32>(4, 5, 6, 7, 4, 5, 6, 7), to: __m256i.self)))
}

/// The `vpmaddwd` factor of sub-block k: words 0…7 = scale 2k, 8…15 = scale 2k + 1.
@inline(__always)
func subBlockScales(_ halves: (low: __m256i, high: __m256i), _ k: Int) -> __m256i {
    let first = UInt8(truncatingIfNeeded: 4 &* (k & 3))
    var select = SIMD32<UInt8>()
    for i in 0..<8 {
        select[2 &* i] = first
        select[2 &* i &+ 1] = first &+ 1
        select[16 &+ 2 &* i] = first &+ 2
        select[17 &+ 2 &* i] = first &+ 3
    }
    return _mm256_shuffle_epi8(k < 4 ? halves.low : halves.high, unsafeBitCast(select, to: __m256i.self))
}

/// Word k of `halves` (eight int16 words in both 128-bit halves) in all 16 words.
@inline(__always)
func scaleOf(_ halves: __m256i, _ k: Int) -> __m256i {
    var select = SIMD32<UInt8>()
    for i in 0..<16 {
        select[2 &* i] = UInt8(truncatingIfNeeded: 2 &* k)
        select[2 &* i &+ 1] = UInt8(truncatingIfNeeded: 2 &* k &+ 1)
    }
    return _mm256_shuffle_epi8(halves, unsafeBitCast(select, to: __m256i.self))
}

#if JINDOU_AVX512
/// The `vpmaddwd` factor of sub-blocks 2j, 2j + 1 from sixteen per-16 scales (words 0…15
/// of `scales`): words 8i…8i + 7 = scale 4j + i.
@inline(__always)
func pairScales(_ scales: __m512i, _ j: Int) -> __m512i {
    // Built from splats, not a lane loop: LLVM does not fold a 32-lane loop into a constant.
    let first = UInt16(truncatingIfNeeded: 4 &* j)
    let index = SIMD32<UInt16>(lowHalf: SIMD16(lowHalf: SIMD8(repeating: first), highHalf: SIMD8(repeating: first &+ 1)),
                               highHalf: SIMD16(lowHalf: SIMD8(repeating: first &+ 2), highHalf: SIMD8(repeating: first &+ 3)))
    return _mm512_permutexvar_epi16(unsafeBitCast(index, to: __m512i.self), scales)
}
#endif

// MARK: - Grid lookups

/// Four 8-byte grid entries (32 weights) from four index bytes at `indices`.
@inline(__always)
func gridQuad(_ grid: UnsafePointer<UInt64>, _ indices: UnsafeRawPointer) -> __m256i {
    @inline(__always) func entry(_ l: Int) -> UInt64 { grid[Int(indices.load(fromByteOffset: l, as: UInt8.self))] }
    return unsafeBitCast(SIMD4<UInt64>(entry(0), entry(1), entry(2), entry(3)), to: __m256i.self)
}

/// Four 8-byte grid entries from four 16-bit indices packed in `indices`.
@inline(__always)
func gridQuad16(_ grid: UnsafePointer<UInt64>, _ indices: UInt64) -> __m256i {
    @inline(__always) func entry(_ l: UInt64) -> UInt64 { grid[Int(truncatingIfNeeded: (indices >> (16 &* l)) & 0xFFFF)] }
    return unsafeBitCast(SIMD4<UInt64>(entry(0), entry(1), entry(2), entry(3)), to: __m256i.self)
}

/// Eight 4-byte grid entries (32 weights) from two words of four 16-bit indices.
@inline(__always)
func gridOctet32(_ grid: UnsafePointer<UInt32>, _ first: UInt64, _ second: UInt64) -> __m256i {
    @inline(__always) func entry(_ indices: UInt64, _ l: UInt64) -> UInt32 { grid[Int(truncatingIfNeeded: (indices >> (16 &* l)) & 0xFFFF)] }
    return unsafeBitCast(SIMD8<UInt32>(entry(first, 0), entry(first, 1), entry(first, 2), entry(first, 3),
                                       entry(second, 0), entry(second, 1), entry(second, 2), entry(second, 3)), to: __m256i.self)
}

#if JINDOU_AVX512
/// Eight 8-byte grid entries (64 weights) from four index bytes at `first` and four at `second`.
@inline(__always)
func gridOctet(_ grid: UnsafePointer<UInt64>, _ first: UnsafeRawPointer, _ second: UnsafeRawPointer) -> __m512i {
    @inline(__always) func entry(_ p: UnsafeRawPointer, _ l: Int) -> UInt64 { grid[Int(p.load(fromByteOffset: l, as: UInt8.self))] }
    return unsafeBitCast(SIMD8<UInt64>(entry(first, 0), entry(first, 1), entry(first, 2), entry(first, 3),
                                       entry(second, 0), entry(second, 1), entry(second, 2), entry(second, 3)), to: __m512i.self)
}

/// Eight 8-byte grid entries (64 weights) from two words of four 16-bit indices.
@inline(__always)
func gridOctet16(_ grid: UnsafePointer<UInt64>, _ first: UInt64, _ second: UInt64) -> __m512i {
    @inline(__always) func entry(_ indices: UInt64, _ l: UInt64) -> UInt64 { grid[Int(truncatingIfNeeded: (indices >> (16 &* l)) & 0xFFFF)] }
    return unsafeBitCast(SIMD8<UInt64>(entry(first, 0), entry(first, 1), entry(first, 2), entry(first, 3),
                                       entry(second, 0), entry(second, 1), entry(second, 2), entry(second, 3)), to: __m512i.self)
}
#endif

/// `value` negated where `mask` is 0xFF.
@inline(__always)
func negate(_ value: __m256i, where mask: __m256i) -> __m256i {
    _mm256_sub_epi8(_mm256_xor_si256(value, mask), mask)
}

#endif
