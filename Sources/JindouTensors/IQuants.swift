// ggml's IQ formats: the lattice ("grid") formats IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S,
// IQ1_S, IQ1_M (decoded only), and the non-linear 4-bit formats IQ4_NL and IQ4_XS
// (decoded and encoded). Mirrors ggml-quants.c's `dequantize_row_iq*`,
// `quantize_iq4_nl`/`quantize_iq4_xs` (`quantize_row_iq4_nl_impl`). Grids and signs:
// GGMLTables (generated from ggml-common.h).
//
// Grid entries are 8 (or 4) bytes read in memory order: byte j of a little-endian UInt64
// entry is the magnitude (IQ1: the signed value) of weight j of the group.

/// Byte `j` of grid entry `entry` (little-endian), as ggml reads `(const uint8_t *)(grid + i)`.
@inline(__always)
func gridByte(_ entry: UInt64, _ j: Int) -> UInt8 { UInt8(truncatingIfNeeded: entry >> UInt64(8 * j)) }

@inline(__always)
func gridByte(_ entry: UInt32, _ j: Int) -> UInt8 { UInt8(truncatingIfNeeded: entry >> UInt32(8 * j)) }

/// ggml's `(signs & kmask_iq2xs[j] ? -1.f : 1.f)`: exactly ±1, built from the bit rather
/// than chosen by a branch (random signs make a branch mispredict half the time).
@inline(__always)
func signFactor(_ signs: UInt8, _ mask: UInt8) -> Float {
    Float(bitPattern: 0x3F80_0000 | ((UInt32(signs & mask) &+ 255) >> 8) << 31)
}

/// IQ2_XXS: `block_iq2_xxs`, 66 bytes: f16 `d` at 0, then for each 32 weights 8 bytes at
/// 2 + 8·s: four 8-bit `iq2xxs_grid` indices (one per 8 weights), then a u32 holding four
/// 7-bit `ksigns_iq2xs` indices (bits 7·l) and a 4-bit scale (bits 28–31).
/// Weight = d·(0.5 + scale)·0.25 · grid · sign.
public enum IQ2_XXS {
    @inlinable public static var blockSize: Int { 256 }
    @inlinable public static var bytesPerBlock: Int { 66 }

    /// `dequantize_row_iq2_xxs`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        let grid = GGMLTables.iq2xxsGrid.base, signTable = GGMLTables.ksignsIQ2XS.base, mask = GGMLTables.kmaskIQ2XS.base
        var y = y
        for i in 0..<count {
            let b = blocks + i * bytesPerBlock
            let d = b.half(0)
            for ib32 in 0..<8 {
                let q = b + 2 + 8 * ib32
                let aux1 = q.u32(4)
                let db = d * (0.5 + Float(aux1 >> 28)) * 0.25
                for l in 0..<4 {
                    let entry = grid[Int(q.byte(l))]
                    let signs = signTable[Int((aux1 >> UInt32(7 * l)) & 127)]
                    for j in 0..<8 { y[j] = db * Float(gridByte(entry, j)) * signFactor(signs, mask[j]) }
                    y += 8
                }
            }
        }
    }
}

/// IQ2_XS: `block_iq2_xs`, 74 bytes: f16 `d` at 0, 32 u16 at 2 (one per 8 weights: a
/// 9-bit `iq2xs_grid` index and a 7-bit `ksigns_iq2xs` index above it), 8 scale bytes at
/// 66 (per 32 weights: low nibble for the first 16, high nibble for the next 16).
/// Weight = d·(0.5 + scale)·0.25 · grid · sign.
public enum IQ2_XS {
    @inlinable public static var blockSize: Int { 256 }
    @inlinable public static var bytesPerBlock: Int { 74 }
    @inlinable public static var scalesOffset: Int { 66 }

    /// `dequantize_row_iq2_xs`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        let grid = GGMLTables.iq2xsGrid.base, signTable = GGMLTables.ksignsIQ2XS.base, mask = GGMLTables.kmaskIQ2XS.base
        var y = y
        for i in 0..<count {
            let b = blocks + i * bytesPerBlock
            let d = b.half(0)
            for ib32 in 0..<8 {
                let scale = b.byte(scalesOffset + ib32)
                let db0 = d * (0.5 + Float(scale & 0xf)) * 0.25
                let db1 = d * (0.5 + Float(scale >> 4)) * 0.25
                for l in 0..<4 {
                    let q = b.u16(2 + 2 * (4 * ib32 + l))
                    let entry = grid[Int(q & 511)]
                    let signs = signTable[Int(q >> 9)]
                    let db = l / 2 == 0 ? db0 : db1
                    for j in 0..<8 { y[j] = db * Float(gridByte(entry, j)) * signFactor(signs, mask[j]) }
                    y += 8
                }
            }
        }
    }
}

/// IQ2_S: `block_iq2_s`, 82 bytes: f16 `d` at 0, 32 low index bytes at 2 (one per 8
/// weights), 32 sign bytes at 34 (bit j: weight j of the group negative), 8 bytes at 66 of
/// the indices' top two bits (bits 2l of byte s for group l of the 32 weights s), 8 scale
/// bytes at 74 (as IQ2_XS). 10-bit `iq2s_grid` indices. Weight = d·(0.5 + scale)·0.25 · grid · sign.
public enum IQ2_S {
    @inlinable public static var blockSize: Int { 256 }
    @inlinable public static var bytesPerBlock: Int { 82 }
    @inlinable public static var signsOffset: Int { 34 }
    @inlinable public static var highBitsOffset: Int { 66 }
    @inlinable public static var scalesOffset: Int { 74 }

    /// `dequantize_row_iq2_s`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        let grid = GGMLTables.iq2sGrid.base, mask = GGMLTables.kmaskIQ2XS.base
        var y = y
        for i in 0..<count {
            let b = blocks + i * bytesPerBlock
            let d = b.half(0)
            var qs = b + 2, signs = b + signsOffset
            let qh = b + highBitsOffset
            for ib32 in 0..<8 {
                let scale = b.byte(scalesOffset + ib32)
                let db0 = d * (0.5 + Float(scale & 0xf)) * 0.25
                let db1 = d * (0.5 + Float(scale >> 4)) * 0.25
                for l in 0..<4 {
                    let dl = l / 2 == 0 ? db0 : db1
                    let index = Int(qs.byte(l)) | (Int(qh.byte(ib32)) << (8 - 2 * l) & 0x300)
                    let entry = grid[index], sign = signs.byte(l)
                    for j in 0..<8 { y[j] = dl * Float(gridByte(entry, j)) * signFactor(sign, mask[j]) }
                    y += 8
                }
                qs += 4
                signs += 4
            }
        }
    }
}

/// IQ3_XXS: `block_iq3_xxs`, 98 bytes: f16 `d` at 0, 64 bytes of 8-bit `iq3xxs_grid`
/// indices at 2 (one per 4 weights), then at 66 one u32 per 32 weights: four 7-bit
/// `ksigns_iq2xs` indices (bits 7·l, one per 8 weights) and a 4-bit scale (bits 28–31).
/// Weight = d·(0.5 + scale)·0.5 · grid · sign.
public enum IQ3_XXS {
    @inlinable public static var blockSize: Int { 256 }
    @inlinable public static var bytesPerBlock: Int { 98 }
    @inlinable public static var scalesAndSignsOffset: Int { 66 }

    /// `dequantize_row_iq3_xxs`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        let grid = GGMLTables.iq3xxsGrid.base, signTable = GGMLTables.ksignsIQ2XS.base, mask = GGMLTables.kmaskIQ2XS.base
        var y = y
        for i in 0..<count {
            let b = blocks + i * bytesPerBlock
            let d = b.half(0)
            var qs = b + 2
            for ib32 in 0..<8 {
                let aux32 = b.u32(scalesAndSignsOffset + 4 * ib32)
                let db = d * (0.5 + Float(aux32 >> 28)) * 0.5
                for l in 0..<4 {
                    let signs = signTable[Int((aux32 >> UInt32(7 * l)) & 127)]
                    let grid1 = grid[Int(qs.byte(2 * l))], grid2 = grid[Int(qs.byte(2 * l + 1))]
                    for j in 0..<4 {
                        y[j] = db * Float(gridByte(grid1, j)) * signFactor(signs, mask[j])
                        y[j + 4] = db * Float(gridByte(grid2, j)) * signFactor(signs, mask[j + 4])
                    }
                    y += 8
                }
                qs += 8
            }
        }
    }
}

/// IQ3_S: `block_iq3_s`, 110 bytes: f16 `d` at 0, 64 low index bytes at 2 (one per 4
/// weights), 8 bytes at 66 of the indices' ninth bits (bit k of byte s: index k of the 32
/// weights s), 32 sign bytes at 74 (one per 8 weights), 4 scale bytes at 106 (per 64
/// weights: low nibble the first 32, high nibble the next). 9-bit `iq3s_grid` indices.
/// Weight = d·(1 + 2·scale) · grid · sign.
public enum IQ3_S {
    @inlinable public static var blockSize: Int { 256 }
    @inlinable public static var bytesPerBlock: Int { 110 }
    @inlinable public static var highBitsOffset: Int { 66 }
    @inlinable public static var signsOffset: Int { 74 }
    @inlinable public static var scalesOffset: Int { 106 }

    /// `dequantize_row_iq3_s`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        let grid = GGMLTables.iq3sGrid.base, mask = GGMLTables.kmaskIQ2XS.base
        var y = y
        for i in 0..<count {
            let b = blocks + i * bytesPerBlock
            let d = b.half(0)
            var qs = b + 2, qh = b + highBitsOffset, signs = b + signsOffset
            for ib32 in stride(from: 0, to: 8, by: 2) {
                let scale = b.byte(scalesOffset + ib32 / 2)
                let db1 = d * Float(1 + 2 * Int32(scale & 0xf))
                let db2 = d * Float(1 + 2 * Int32(scale >> 4))
                for half in 0..<2 {
                    let db = half == 0 ? db1 : db2, h = Int(qh.byte(half))
                    for l in 0..<4 {
                        let grid1 = grid[Int(qs.byte(2 * l)) | ((h << (8 - 2 * l)) & 256)]
                        let grid2 = grid[Int(qs.byte(2 * l + 1)) | ((h << (7 - 2 * l)) & 256)]
                        let sign = signs.byte(l)
                        for j in 0..<4 {
                            y[j] = db * Float(gridByte(grid1, j)) * signFactor(sign, mask[j])
                            y[j + 4] = db * Float(gridByte(grid2, j)) * signFactor(sign, mask[j + 4])
                        }
                        y += 8
                    }
                    qs += 8
                    signs += 4
                }
                qh += 2
            }
        }
    }
}

/// IQ1_S: `block_iq1_s`, 50 bytes: f16 `d` at 0, 32 low index bytes at 2 (one per 8
/// weights), then at 34 one u16 per 32 weights: the indices' top 3 bits (bits 3l), a 3-bit
/// scale (bits 12–14) and the sign of the shift δ (bit 15). 11-bit `iq1s_grid` indices of
/// signed values −1, 0, 1. Weight = d·(2·scale + 1) · (grid ± δ).
public enum IQ1_S {
    @inlinable public static var blockSize: Int { 256 }
    @inlinable public static var bytesPerBlock: Int { 50 }
    @inlinable public static var highBitsOffset: Int { 34 }

    /// `dequantize_row_iq1_s`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        let grid = GGMLTables.iq1sGrid.base, delta = GGMLTables.iq1sDelta
        var y = y
        for i in 0..<count {
            let b = blocks + i * bytesPerBlock
            let d = b.half(0)
            var qs = b + 2
            for ib in 0..<8 {
                let qh = b.u16(highBitsOffset + 2 * ib)
                let dl = d * Float(2 * Int32((qh >> 12) & 7) + 1)
                let shift = qh & 0x8000 != 0 ? -delta : delta
                for l in 0..<4 {
                    let entry = grid[Int(qs.byte(l)) | (Int((qh >> UInt16(3 * l)) & 7) << 8)]
                    for j in 0..<8 { y[j] = dl * (Float(Int8(bitPattern: gridByte(entry, j))) + shift) }
                    y += 8
                }
                qs += 4
            }
        }
    }
}

/// IQ1_M: `block_iq1_m`, 56 bytes: 32 low index bytes at 0 (one per 8 weights), 16 bytes
/// at 32 (per 16 weights: the two indices' top 3 bits, nibble-wise, and bit 3 of each
/// nibble the sign of that group's shift δ), 8 scale bytes at 48 as four u16: 3-bit scales
/// (two per 32 weights, bits 6·(s%2) and 6·(s%2)+3 of u16 s/2) and, in the top nibbles,
/// the f16 super-block scale `d`. Weight = d·(2·scale + 1) · (grid ± δ).
public enum IQ1_M {
    @inlinable public static var blockSize: Int { 256 }
    @inlinable public static var bytesPerBlock: Int { 56 }
    @inlinable public static var highBitsOffset: Int { 32 }
    @inlinable public static var scalesOffset: Int { 48 }

    /// The f16 super-block scale spread over the top nibbles of the four scale u16s
    /// (`iq1m_scale_t`), widened.
    @inlinable @inline(__always)
    public static func superBlockScale(_ block: UnsafeRawPointer) -> Float {
        func sc(_ k: Int) -> UInt16 { UInt16(littleEndian: block.loadUnaligned(fromByteOffset: 48 + 2 * k, as: UInt16.self)) }
        let bits = (sc(0) >> 12) | ((sc(1) >> 8) & 0x00f0) | ((sc(2) >> 4) & 0x0f00) | (sc(3) & 0xf000)
        return Float(Float16(bitPattern: bits))
    }

    /// `dequantize_row_iq1_m`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        let grid = GGMLTables.iq1sGrid.base, delta = GGMLTables.iq1mDelta
        var y = y
        for i in 0..<count {
            let b = blocks + i * bytesPerBlock
            let d = superBlockScale(b)
            var qs = b, qh = b + highBitsOffset
            for ib in 0..<8 {
                let sc = b.u16(scalesOffset + 2 * (ib / 2))
                let dl1 = d * Float(2 * Int32((sc >> UInt16(6 * (ib % 2))) & 0x7) + 1)
                let dl2 = d * Float(2 * Int32((sc >> UInt16(6 * (ib % 2) + 3)) & 0x7) + 1)
                for l in 0..<4 {
                    // idx[l] and delta[l] of ggml: groups 0, 1 take qh[0]'s low and high
                    // nibble, groups 2, 3 qh[1]'s.
                    let h = UInt16(qh.byte(l / 2))
                    let index = UInt16(qs.byte(l)) | ((h << (l % 2 == 0 ? 8 : 4)) & 0x700)
                    let shift = h & (l % 2 == 0 ? 0x08 : 0x80) != 0 ? -delta : delta
                    let entry = grid[Int(index)], dl = l < 2 ? dl1 : dl2
                    for j in 0..<8 { y[j] = dl * (Float(Int8(bitPattern: gridByte(entry, j))) + shift) }
                    y += 8
                }
                qs += 4
                qh += 2
            }
        }
    }
}

/// IQ4_NL: `block_iq4_nl`, 18 bytes: f16 `d` at 0, 16 bytes of 4-bit `kvalues_iq4nl`
/// indices at 2 (byte j: weight j low, weight j + 16 high, as Q4_0). Weight = d · kvalue.
public enum IQ4_NL {
    @inlinable public static var blockSize: Int { 32 }
    @inlinable public static var bytesPerBlock: Int { 18 }

    /// `quantize_iq4_nl` (what `ggml_quantize_chunk` runs, `ntry` 7).
    static func quantize(_ x: UnsafePointer<Float>, _ blocks: Int, _ out: UnsafeMutableRawPointer, importance: UnsafePointer<Float>?) {
        NonLinear4Bit.quantize(x, blocks, out, superBlockSize: 32, importance: importance)
    }

    /// `dequantize_row_iq4_nl`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        let values = GGMLTables.kvaluesIQ4NL.base
        for i in 0..<count {
            let b = blocks + i * bytesPerBlock, out = y + 32 * i
            let d = b.half(0)
            for j in 0..<16 {
                let q = b.byte(2 + j)
                out[j] = d * Float(values[Int(q & 0xf)])
                out[j + 16] = d * Float(values[Int(q >> 4)])
            }
        }
    }
}

/// IQ4_XS: `block_iq4_xs`, 136 bytes: f16 `d` at 0, u16 `scales_h` at 2 (the top two
/// bits of the eight 6-bit scales, bits 2s), 4 bytes `scales_l` at 4 (their low nibbles,
/// two per byte), 128 bytes of 4-bit `kvalues_iq4nl` indices at 8 (per 32 weights, as
/// IQ4_NL). Weight = d·(scale − 32) · kvalue.
public enum IQ4_XS {
    @inlinable public static var blockSize: Int { 256 }
    @inlinable public static var bytesPerBlock: Int { 136 }
    @inlinable public static var quantsOffset: Int { 8 }

    /// Sub-block `ib`'s 6-bit scale (0…63, the weight scale is d·(it − 32)).
    @inlinable @inline(__always)
    public static func scale(_ ib: Int, _ block: UnsafeRawPointer) -> Int32 {
        let low = block.load(fromByteOffset: 4 + ib / 2, as: UInt8.self)
        let high = UInt16(littleEndian: block.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        return Int32((low >> UInt8(4 * (ib % 2))) & 0xf) | (Int32((high >> UInt16(2 * ib)) & 3) << 4)
    }

    /// `quantize_iq4_xs` (`ntry` 7).
    static func quantize(_ x: UnsafePointer<Float>, _ blocks: Int, _ out: UnsafeMutableRawPointer, importance: UnsafePointer<Float>?) {
        NonLinear4Bit.quantize(x, blocks, out, superBlockSize: 256, importance: importance)
    }

    /// `dequantize_row_iq4_xs`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        let values = GGMLTables.kvaluesIQ4NL.base
        var y = y
        for i in 0..<count {
            let b = blocks + i * bytesPerBlock
            var qs = b + quantsOffset
            let d = b.half(0)
            for ib in 0..<8 {
                let dl = d * Float(scale(ib, b) - 32)
                for j in 0..<16 {
                    y[j] = dl * Float(values[Int(qs.byte(j) & 0xf)])
                    y[j + 16] = dl * Float(values[Int(qs.byte(j) >> 4)])
                }
                y += 32
                qs += 16
            }
        }
    }
}

/// `quantize_row_iq4_nl_impl` for IQ4_NL (one block of 32 per call) and IQ4_XS (a
/// super-block of 256 with 6-bit sub-block scales), with `ntry` 7 and `kvalues_iq4nl`, as
/// `quantize_iq4_nl` and `quantize_iq4_xs` call it.
enum NonLinear4Bit {
    static let ntry = 7

    /// `best_index_int8`: the index of the level nearest `x` (ties to the upper one).
    @inline(__always)
    static func bestIndex(_ values: UnsafePointer<Int8>, _ x: Float) -> UInt8 {
        if x <= Float(values[0]) { return 0 }
        if x >= Float(values[15]) { return 15 }
        var ml = 0, mu = 15
        while mu - ml > 1 {
            let mav = (ml + mu) / 2
            if x < Float(values[mav]) { mu = mav } else { ml = mav }
        }
        return UInt8(x - Float(values[mu - 1]) < Float(values[mu]) - x ? mu - 1 : mu)
    }

    static func quantize(_ x: UnsafePointer<Float>, _ blocks: Int, _ out: UnsafeMutableRawPointer, superBlockSize: Int,
                         importance: UnsafePointer<Float>?) {
        let values = GGMLTables.kvaluesIQ4NL.base
        let bytes = superBlockSize == 32 ? IQ4_NL.bytesPerBlock : IQ4_XS.bytesPerBlock
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 256) { levels in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 32 + 8) { floats in
            let L = levels.baseAddress!, weight = floats.baseAddress!, scales = weight + 32
            for ibl in 0..<blocks {
                let xs = x + superBlockSize * ibl, y = out + bytes * ibl
                let qw = importance.map { $0 + superBlockSize * ibl }
                let q4 = y + (superBlockSize == 32 ? 2 : IQ4_XS.quantsOffset)
                var sigma2: Float = 0
                for j in 0..<superBlockSize { sigma2 += xs[j] * xs[j] }
                sigma2 *= 2 / Float(superBlockSize)
                for j in 0..<(superBlockSize / 2) { q4.setByte(0, j) }
                y.setHalf(0, 0)
                var maxScale: Float = 0, amaxScale: Float = 0
                for ib in 0..<(superBlockSize / 32) {
                    let xb = xs + 32 * ib, Lb = L + 32 * ib
                    if let qw {
                        for j in 0..<32 { weight[j] = qw[32 * ib + j] * (sigma2 + xb[j] * xb[j]).squareRoot() }
                    } else {
                        for j in 0..<32 { weight[j] = xb[j] * xb[j] }
                    }
                    var amax: Float = 0, maximum: Float = 0
                    for j in 0..<32 {
                        let ax = abs(xb[j])
                        if ax > amax {
                            amax = ax
                            maximum = xb[j]
                        }
                    }
                    if amax < ScaleSearch.groupMaxEps {
                        scales[ib] = 0
                        continue
                    }
                    var d = -maximum / Float(values[0])  // ntry > 0
                    var id = 1 / d
                    var sumqx: Float = 0, sumq2: Float = 0
                    for j in 0..<32 {
                        let al = id * xb[j]
                        let l = bestIndex(values, al)
                        Lb[j] = l
                        let q = Float(values[Int(l)]), w = weight[j]
                        sumqx += w * q * xb[j]
                        sumq2 += w * q * q
                    }
                    d = sumq2 > 0 ? sumqx / sumq2 : 0
                    var best = d * sumqx
                    for itry in -ntry...ntry {
                        id = Float(itry + Int(values[0])) / maximum
                        sumqx = 0
                        sumq2 = 0
                        for j in 0..<32 {
                            let al = id * xb[j]
                            let q = Float(values[Int(bestIndex(values, al))]), w = weight[j]
                            sumqx += w * q * xb[j]
                            sumq2 += w * q * q
                        }
                        if sumq2 > 0 && sumqx * sumqx > best * sumq2 {
                            d = sumqx / sumq2
                            best = d * sumqx
                        }
                    }
                    scales[ib] = d
                    let absD = abs(d)
                    if absD > amaxScale {
                        amaxScale = absD
                        maxScale = d
                    }
                }
                if superBlockSize > 32 {
                    y.setU16(0, 2)
                    let d = -maxScale / 32
                    y.setHalf(d, 0)
                    let id: Float = d != 0 ? 1 / d : 0
                    for ib in 0..<8 {
                        var l = max(-32, min(31, nearestInt(id * scales[ib])))
                        let dl = d * Float(l)
                        let idl: Float = dl != 0 ? 1 / dl : 0
                        let Lb = L + 32 * ib, xb = xs + 32 * ib
                        for j in 0..<32 { Lb[j] = bestIndex(values, idl * xb[j]) }
                        l += 32
                        let low = UInt8(truncatingIfNeeded: l & 0xf), high = UInt16(truncatingIfNeeded: l >> 4)
                        if ib % 2 == 0 { y.setByte(low, 4 + ib / 2) } else { y.orByte(low << 4, 4 + ib / 2) }
                        y.setU16(UnsafeRawPointer(y).u16(2) | (high << UInt16(2 * ib)), 2)
                    }
                } else {
                    y.setHalf(scales[0], 0)
                    let id: Float = scales[0] != 0 ? 1 / scales[0] : 0
                    for j in 0..<32 { L[j] = bestIndex(values, id * xs[j]) }
                }
                for i in 0..<(superBlockSize / 32) {
                    for j in 0..<16 { q4.setByte(L[32 * i + j] | (L[32 * i + 16 + j] << 4), 16 * i + j) }
                }
            }
        }
        }
    }
}
