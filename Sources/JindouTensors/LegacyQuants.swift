// ggml's first block formats, 32 weights per block: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.
// Mirrors ggml-quants.c: `quantize_row_*_ref` (no importance), `quantize_row_*_impl`
// (with importance, as `quantize_q4_0` … pick) and `dequantize_row_*`.

/// Q4_0: `block_q4_0`, 18 bytes: f16 `d` at 0, 16 bytes of nibbles at 2 (byte j: weight j
/// in the low nibble, weight j + 16 in the high). Weight = d · (q − 8).
public enum Q4_0 {
    @inlinable public static var blockSize: Int { 32 }
    @inlinable public static var bytesPerBlock: Int { 18 }
    /// Byte offset of the nibbles.
    @inlinable public static var quantsOffset: Int { 2 }

    static func quantize(_ x: UnsafePointer<Float>, _ blocks: Int, _ out: UnsafeMutableRawPointer, importance: UnsafePointer<Float>?) {
        guard let importance else {
            // quantize_row_q4_0_ref
            for i in 0..<blocks {
                let xb = x + i * 32, y = out + i * bytesPerBlock
                var amax: Float = 0, maximum: Float = 0
                for j in 0..<32 where amax < abs(xb[j]) {
                    amax = abs(xb[j])
                    maximum = xb[j]
                }
                let d = maximum / -8
                let id: Float = d != 0 ? 1 / d : 0
                y.setHalf(d, 0)
                for j in 0..<16 {
                    let x0 = xb[j] * id, x1 = xb[16 + j] * id
                    let xi0 = UInt8(truncatingIfNeeded: min(15, Int32(Int8(truncatingIfNeeded: truncatedInt(x0 + 8.5)))))
                    let xi1 = UInt8(truncatingIfNeeded: min(15, Int32(Int8(truncatingIfNeeded: truncatedInt(x1 + 8.5)))))
                    y.setByte(xi0 | (xi1 << 4), 2 + j)
                }
            }
            return
        }
        // quantize_row_q4_0_impl
        let sigma2 = rowVariance(x, blocks * 32)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 32) { weight in
            withUnsafeTemporaryAllocation(of: Int8.self, capacity: 32) { L in
                for ib in 0..<blocks {
                    let xb = x + 32 * ib, qw = importance + 32 * ib, y = out + ib * bytesPerBlock
                    for j in 0..<32 { weight[j] = qw[j] * (sigma2 + xb[j] * xb[j]).squareRoot() }
                    let d = ScaleSearch.qx(32, 8, xb, L.baseAddress!, rmseType: 1, weight.baseAddress!)
                    y.setHalf(d, 0)
                    for j in 0..<16 { y.setByte(UInt8(bitPattern: L[j] | (L[j + 16] << 4)), 2 + j) }
                }
            }
        }
    }

    /// `dequantize_row_q4_0`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        for i in 0..<count {
            let b = blocks + i * bytesPerBlock, out = y + i * 32
            let d = b.half(0)
            for j in 0..<16 {
                let q = b.byte(2 + j)
                out[j] = Float(Int32(q & 0x0F) - 8) * d
                out[j + 16] = Float(Int32(q >> 4) - 8) * d
            }
        }
    }
}

/// Q4_1: `block_q4_1`, 20 bytes: f16 `d` at 0, f16 `m` at 2, 16 bytes of nibbles at 4
/// (as Q4_0). Weight = d · q + m.
public enum Q4_1 {
    @inlinable public static var blockSize: Int { 32 }
    @inlinable public static var bytesPerBlock: Int { 20 }
    /// Byte offset of the nibbles.
    @inlinable public static var quantsOffset: Int { 4 }

    static func quantize(_ x: UnsafePointer<Float>, _ blocks: Int, _ out: UnsafeMutableRawPointer, importance: UnsafePointer<Float>?) {
        guard let importance else {
            // quantize_row_q4_1_ref
            for i in 0..<blocks {
                let xb = x + i * 32, y = out + i * bytesPerBlock
                var minimum = Float.greatestFiniteMagnitude, maximum = -Float.greatestFiniteMagnitude
                for j in 0..<32 {
                    if xb[j] < minimum { minimum = xb[j] }
                    if xb[j] > maximum { maximum = xb[j] }
                }
                let d = (maximum - minimum) / 15
                let id: Float = d != 0 ? 1 / d : 0
                y.setHalf(d, 0)
                y.setHalf(minimum, 2)
                for j in 0..<16 {
                    let x0 = (xb[j] - minimum) * id, x1 = (xb[16 + j] - minimum) * id
                    let xi0 = UInt8(truncatingIfNeeded: min(15, Int32(Int8(truncatingIfNeeded: truncatedInt(x0 + 0.5)))))
                    let xi1 = UInt8(truncatingIfNeeded: min(15, Int32(Int8(truncatingIfNeeded: truncatedInt(x1 + 0.5)))))
                    y.setByte(xi0 | (xi1 << 4), 4 + j)
                }
            }
            return
        }
        // quantize_row_q4_1_impl
        let sigma2 = rowVariance(x, blocks * 32)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 32) { weight in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64) { L in
                for ib in 0..<blocks {
                    let xb = x + 32 * ib, qw = importance + 32 * ib, y = out + ib * bytesPerBlock
                    for j in 0..<32 { weight[j] = qw[j] * (sigma2 + xb[j] * xb[j]).squareRoot() }
                    let (d, m) = ScaleSearch.qkx3(32, 15, xb, weight.baseAddress!, L.baseAddress!, L.baseAddress! + 32,
                                                  rmin: -0.9, rdelta: 0.05, nstep: 36, useMad: false)
                    y.setHalf(d, 0)
                    y.setHalf(-m, 2)
                    for j in 0..<16 { y.setByte(L[j] | (L[j + 16] << 4), 4 + j) }
                }
            }
        }
    }

    /// `dequantize_row_q4_1`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        for i in 0..<count {
            let b = blocks + i * bytesPerBlock, out = y + i * 32
            let d = b.half(0), m = b.half(2)
            for j in 0..<16 {
                let q = b.byte(4 + j)
                out[j] = Float(q & 0x0F) * d + m
                out[j + 16] = Float(q >> 4) * d + m
            }
        }
    }
}

/// Q5_0: `block_q5_0`, 22 bytes: f16 `d` at 0, the 32 fifth bits at 2 (a little-endian
/// u32, bit j for weight j), 16 bytes of low nibbles at 6 (as Q4_0). Weight = d · (q − 16).
public enum Q5_0 {
    @inlinable public static var blockSize: Int { 32 }
    @inlinable public static var bytesPerBlock: Int { 22 }
    /// Byte offsets of the high bits and of the nibbles.
    @inlinable public static var highBitsOffset: Int { 2 }
    @inlinable public static var quantsOffset: Int { 6 }

    static func quantize(_ x: UnsafePointer<Float>, _ blocks: Int, _ out: UnsafeMutableRawPointer, importance: UnsafePointer<Float>?) {
        guard let importance else {
            // quantize_row_q5_0_ref
            for i in 0..<blocks {
                let xb = x + i * 32, y = out + i * bytesPerBlock
                var amax: Float = 0, maximum: Float = 0
                for j in 0..<32 where amax < abs(xb[j]) {
                    amax = abs(xb[j])
                    maximum = xb[j]
                }
                let d = maximum / -16
                let id: Float = d != 0 ? 1 / d : 0
                y.setHalf(d, 0)
                var qh: UInt32 = 0
                for j in 0..<16 {
                    let x0 = xb[j] * id, x1 = xb[16 + j] * id
                    let xi0 = UInt8(truncatingIfNeeded: min(31, Int32(Int8(truncatingIfNeeded: truncatedInt(x0 + 16.5)))))
                    let xi1 = UInt8(truncatingIfNeeded: min(31, Int32(Int8(truncatingIfNeeded: truncatedInt(x1 + 16.5)))))
                    y.setByte((xi0 & 0x0F) | ((xi1 & 0x0F) << 4), 6 + j)
                    qh |= UInt32((xi0 & 0x10) >> 4) << j
                    qh |= UInt32((xi1 & 0x10) >> 4) << (j + 16)
                }
                y.setU32(qh, 2)
            }
            return
        }
        // quantize_row_q5_0_impl
        let sigma2 = rowVariance(x, blocks * 32)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 32) { weight in
            withUnsafeTemporaryAllocation(of: Int8.self, capacity: 32) { L in
                for ib in 0..<blocks {
                    let xb = x + 32 * ib, qw = importance + 32 * ib, y = out + ib * bytesPerBlock
                    for j in 0..<32 { weight[j] = qw[j] * (sigma2 + xb[j] * xb[j]).squareRoot() }
                    let d = ScaleSearch.qx(32, 16, xb, L.baseAddress!, rmseType: 1, weight.baseAddress!)
                    y.setHalf(d, 0)
                    var qh: UInt32 = 0
                    for j in 0..<16 {
                        let xi0 = UInt8(bitPattern: L[j]), xi1 = UInt8(bitPattern: L[j + 16])
                        y.setByte((xi0 & 0x0F) | ((xi1 & 0x0F) << 4), 6 + j)
                        qh |= UInt32((xi0 & 0x10) >> 4) << j
                        qh |= UInt32((xi1 & 0x10) >> 4) << (j + 16)
                    }
                    y.setU32(qh, 2)
                }
            }
        }
    }

    /// `dequantize_row_q5_0`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        for i in 0..<count {
            let b = blocks + i * bytesPerBlock, out = y + i * 32
            let d = b.half(0), qh = b.u32(2)
            for j in 0..<16 {
                let xh0 = UInt8(truncatingIfNeeded: (qh >> UInt32(j)) << 4) & 0x10
                let xh1 = UInt8(truncatingIfNeeded: qh >> UInt32(j + 12)) & 0x10
                let q = b.byte(6 + j)
                out[j] = Float(Int32((q & 0x0F) | xh0) - 16) * d
                out[j + 16] = Float(Int32((q >> 4) | xh1) - 16) * d
            }
        }
    }
}

/// Q5_1: `block_q5_1`, 24 bytes: f16 `d` at 0, f16 `m` at 2, the fifth bits at 4 (u32),
/// 16 bytes of low nibbles at 8. Weight = d · q + m.
public enum Q5_1 {
    @inlinable public static var blockSize: Int { 32 }
    @inlinable public static var bytesPerBlock: Int { 24 }
    /// Byte offsets of the high bits and of the nibbles.
    @inlinable public static var highBitsOffset: Int { 4 }
    @inlinable public static var quantsOffset: Int { 8 }

    static func quantize(_ x: UnsafePointer<Float>, _ blocks: Int, _ out: UnsafeMutableRawPointer, importance: UnsafePointer<Float>?) {
        guard let importance else {
            // quantize_row_q5_1_ref
            for i in 0..<blocks {
                let xb = x + i * 32, y = out + i * bytesPerBlock
                var minimum = Float.greatestFiniteMagnitude, maximum = -Float.greatestFiniteMagnitude
                for j in 0..<32 {
                    if xb[j] < minimum { minimum = xb[j] }
                    if xb[j] > maximum { maximum = xb[j] }
                }
                let d = (maximum - minimum) / 31
                let id: Float = d != 0 ? 1 / d : 0
                y.setHalf(d, 0)
                y.setHalf(minimum, 2)
                var qh: UInt32 = 0
                for j in 0..<16 {
                    let x0 = (xb[j] - minimum) * id, x1 = (xb[16 + j] - minimum) * id
                    let xi0 = UInt8(truncatingIfNeeded: truncatedInt(x0 + 0.5))
                    let xi1 = UInt8(truncatingIfNeeded: truncatedInt(x1 + 0.5))
                    y.setByte((xi0 & 0x0F) | ((xi1 & 0x0F) << 4), 8 + j)
                    qh |= UInt32((xi0 & 0x10) >> 4) << j
                    qh |= UInt32((xi1 & 0x10) >> 4) << (j + 16)
                }
                y.setU32(qh, 4)
            }
            return
        }
        // quantize_row_q5_1_impl
        let sigma2 = rowVariance(x, blocks * 32)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 32) { weight in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64) { L in
                for ib in 0..<blocks {
                    let xb = x + 32 * ib, qw = importance + 32 * ib, y = out + ib * bytesPerBlock
                    for j in 0..<32 { weight[j] = qw[j] * (sigma2 + xb[j] * xb[j]).squareRoot() }
                    let (d, m) = ScaleSearch.qkx3(32, 31, xb, weight.baseAddress!, L.baseAddress!, L.baseAddress! + 32,
                                                  rmin: -0.9, rdelta: 0.05, nstep: 36, useMad: false)
                    y.setHalf(d, 0)
                    y.setHalf(-m, 2)
                    var qh: UInt32 = 0
                    for j in 0..<16 {
                        let xi0 = L[j], xi1 = L[j + 16]
                        y.setByte((xi0 & 0x0F) | ((xi1 & 0x0F) << 4), 8 + j)
                        qh |= UInt32((xi0 & 0x10) >> 4) << j
                        qh |= UInt32((xi1 & 0x10) >> 4) << (j + 16)
                    }
                    y.setU32(qh, 4)
                }
            }
        }
    }

    /// `dequantize_row_q5_1`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        for i in 0..<count {
            let b = blocks + i * bytesPerBlock, out = y + i * 32
            let d = b.half(0), m = b.half(2), qh = b.u32(4)
            for j in 0..<16 {
                let xh0 = UInt8(truncatingIfNeeded: (qh >> UInt32(j)) << 4) & 0x10
                let xh1 = UInt8(truncatingIfNeeded: qh >> UInt32(j + 12)) & 0x10
                let q = b.byte(8 + j)
                out[j] = Float((q & 0x0F) | xh0) * d + m
                out[j + 16] = Float((q >> 4) | xh1) * d + m
            }
        }
    }
}

/// Q8_0: `block_q8_0`, 34 bytes: f16 `d` at 0, then 32 signed bytes; weight = q · d.
public enum Q8_0 {
    @inlinable public static var blockSize: Int { 32 }
    @inlinable public static var bytesPerBlock: Int { 34 }

    /// `quantize_row_q8_0_ref` (what `quantize_q8_0` runs, with or without importance):
    /// d = max|x| / 127, q = roundf(x · (1/d)).
    public static func quantize(_ x: UnsafeBufferPointer<Float>, into out: UnsafeMutableRawBufferPointer) {
        BlockFormat.q8_0.quantize(x, into: out)
    }

    static func quantize(_ x: UnsafePointer<Float>, _ blocks: Int, _ out: UnsafeMutableRawPointer) {
        for b in 0..<blocks {
            let xb = x + b * blockSize, block = out + b * bytesPerBlock
            var amax: Float = 0
            for j in 0..<blockSize { amax = max(amax, abs(xb[j])) }
            let d = amax / 127
            let id: Float = d != 0 ? 1 / d : 0
            block.setHalf(d, 0)
            for j in 0..<blockSize {
                block.storeBytes(of: Int8(truncatingIfNeeded: roundedAway(xb[j] * id)), toByteOffset: 2 + j, as: Int8.self)
            }
        }
    }

    /// `dequantize_row_q8_0`.
    public static func dequantize(_ q: UnsafeRawBufferPointer, into y: UnsafeMutableBufferPointer<Float>) {
        BlockFormat.q8_0.dequantize(q, into: y)
    }

    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        for b in 0..<count {
            let block = blocks + b * bytesPerBlock, out = y + b * blockSize
            let d = block.half(0)
            for j in 0..<blockSize { out[j] = Float(block.load(fromByteOffset: 2 + j, as: Int8.self)) * d }
        }
    }
}

// MARK: - Shared by the encoders

/// `sum_x2 / n_per_row` of the `_impl` encoders: the row's mean square.
@inline(__always)
func rowVariance(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var sumX2: Float = 0
    for j in 0..<n { sumX2 += x[j] * x[j] }
    return sumX2 / Float(n)
}
