// ggml's k-quants: super-blocks of 256 weights in sub-blocks of 16 or 32 with quantised
// scales. Mirrors ggml-quants.c: `quantize_row_q*_K_ref` (no importance),
// `quantize_row_q*_K_impl` (with importance; `quantize_q*_K` picks), `dequantize_row_q*_K`,
// and the scale searches they share (`ScaleSearch`).

/// Q2_K: `block_q2_K`, 84 bytes: 16 bytes of scales at 0 (sub-block j of 16 weights:
/// low nibble its scale, high nibble its min), 64 bytes of 2-bit quants at 16 (for each
/// 128 weights, 32 bytes: weight 32·s + l in bits 2s of byte l), f16 `d` at 80, f16
/// `dmin` at 82. Weight = d·scale_j · q − dmin·min_j.
public enum Q2_K {
    @inlinable public static var blockSize: Int { 256 }
    @inlinable public static var bytesPerBlock: Int { 84 }
    @inlinable public static var scalesOffset: Int { 0 }
    @inlinable public static var quantsOffset: Int { 16 }
    @inlinable public static var dOffset: Int { 80 }
    @inlinable public static var dminOffset: Int { 82 }

    static func quantize(_ x: UnsafePointer<Float>, _ blocks: Int, _ out: UnsafeMutableRawPointer, importance: UnsafePointer<Float>?) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 256 + 16 + 32) { bytes in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 16 * 4) { floats in
            let L = bytes.baseAddress!, Laux = L + 256, Ls = Laux + 16, Lm = Ls + 16
            let weights = floats.baseAddress!, mins = weights + 16, scales = mins + 16, sw = scales + 16
            for i in 0..<blocks {
                let xb = x + 256 * i, y = out + i * bytesPerBlock
                if let importance {
                    // quantize_row_q2_K_impl
                    for j in 0..<16 { sw[j] = 0 }
                    var sumX2: Float = 0
                    for j in 0..<256 { sumX2 += xb[j] * xb[j] }
                    let sigma2 = sumX2 / 256
                    for j in 0..<16 {
                        let qw = importance + 256 * i + 16 * j
                        for l in 0..<16 { weights[l] = qw[l] * (sigma2 + xb[16 * j + l] * xb[16 * j + l]).squareRoot() }
                        for l in 0..<16 { sw[j] += weights[l] }
                        (scales[j], mins[j]) = ScaleSearch.qkx3(16, 3, xb + 16 * j, weights, L + 16 * j, Laux,
                                                                rmin: -0.9, rdelta: 0.05, nstep: 36, useMad: false)
                    }
                    let dm = y.setHalf(ScaleSearch.qp(16, 15, scales, Ls, sw), dOffset)
                    let mm = y.setHalf(ScaleSearch.qp(16, 15, mins, Lm, sw), dminOffset)
                    for j in 0..<16 { y.setByte(Ls[j] | (Lm[j] << 4), j) }
                    for j in 0..<16 {
                        let sc = y.load(fromByteOffset: j, as: UInt8.self)
                        let d = dm * Float(sc & 0xF)
                        if d == 0 { continue }
                        let m = mm * Float(sc >> 4)
                        for ii in 0..<16 { L[16 * j + ii] = UInt8(max(0, min(3, nearestInt((xb[16 * j + ii] + m) / d)))) }
                    }
                } else {
                    // quantize_row_q2_K_ref
                    var maxScale: Float = 0, maxMin: Float = 0
                    for j in 0..<16 {
                        for l in 0..<16 { weights[l] = abs(xb[16 * j + l]) }
                        (scales[j], mins[j]) = ScaleSearch.qkx2(16, 3, xb + 16 * j, weights, L + 16 * j, Laux,
                                                                rmin: -0.5, rdelta: 0.1, nstep: 15, useMad: true)
                        if scales[j] > maxScale { maxScale = scales[j] }
                        if mins[j] > maxMin { maxMin = mins[j] }
                    }
                    if maxScale > 0 {
                        let iscale = 15 / maxScale
                        for j in 0..<16 { y.setByte(UInt8(truncatingIfNeeded: nearestInt(iscale * scales[j])), j) }
                        y.setHalf(maxScale / 15, dOffset)
                    } else {
                        for j in 0..<16 { y.setByte(0, j) }
                        y.setHalf(0, dOffset)
                    }
                    if maxMin > 0 {
                        let iscale = 15 / maxMin
                        for j in 0..<16 { y.orByte(UInt8(truncatingIfNeeded: nearestInt(iscale * mins[j]) << 4), j) }
                        y.setHalf(maxMin / 15, dminOffset)
                    } else {
                        y.setHalf(0, dminOffset)
                    }
                    let dAll = UnsafeRawPointer(y).half(dOffset), minAll = UnsafeRawPointer(y).half(dminOffset)
                    for j in 0..<16 {
                        let sc = y.load(fromByteOffset: j, as: UInt8.self)
                        let d = dAll * Float(sc & 0xF)
                        if d == 0 { continue }
                        let dm = minAll * Float(sc >> 4)
                        for ii in 0..<16 { L[16 * j + ii] = UInt8(max(0, min(3, nearestInt((xb[16 * j + ii] + dm) / d)))) }
                    }
                }
                for j in stride(from: 0, to: 256, by: 128) {
                    for l in 0..<32 {
                        y.setByte(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6), quantsOffset + j / 4 + l)
                    }
                }
            }
        }
        }
    }

    /// `dequantize_row_q2_K`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        var y = y
        for i in 0..<count {
            let b = blocks + i * bytesPerBlock
            let d = b.half(dOffset), minimum = b.half(dminOffset)
            var q = b + quantsOffset
            var scale = 0
            for _ in 0..<2 {
                var shift: UInt8 = 0
                for _ in 0..<4 {
                    var sc = b.byte(scale)
                    scale += 1
                    var dl = d * Float(sc & 0xF), ml = minimum * Float(sc >> 4)
                    for l in 0..<16 { y[l] = dl * Float(Int8((q.byte(l) >> shift) & 3)) - ml }
                    y += 16
                    sc = b.byte(scale)
                    scale += 1
                    dl = d * Float(sc & 0xF)
                    ml = minimum * Float(sc >> 4)
                    for l in 0..<16 { y[l] = dl * Float(Int8((q.byte(l + 16) >> shift) & 3)) - ml }
                    y += 16
                    shift += 2
                }
                q += 32
            }
        }
    }
}

/// Q3_K: `block_q3_K`, 110 bytes: 32 bytes of high bits at 0 (`hmask`: bit s of byte l
/// is the third bit of weight 32·s + l), 64 bytes of low 2-bit quants at 32 (as Q2_K),
/// 12 bytes of sixteen 6-bit scales at 96 (`scales[0..<8]`: low nibbles of scales 0–7 and,
/// high nibble, 8–15; `scales[8..<12]`: their top two bits, scale j at bits 2·(j/4) of
/// byte 8 + j%4), f16 `d` at 108. Weight = d·(scale_j − 32) · (q − 4), where q's third bit
/// set means no −4.
public enum Q3_K {
    @inlinable public static var blockSize: Int { 256 }
    @inlinable public static var bytesPerBlock: Int { 110 }
    @inlinable public static var highBitsOffset: Int { 0 }
    @inlinable public static var quantsOffset: Int { 32 }
    @inlinable public static var scalesOffset: Int { 96 }
    @inlinable public static var dOffset: Int { 108 }

    /// The sixteen scales (each − 32) of the 12 packed bytes at `scales`, as
    /// `dequantize_row_q3_K` unpacks them (its `kmask1`/`kmask2` shuffle).
    @inlinable @inline(__always)
    public static func unpackScales(_ scales: UnsafeRawPointer) -> SIMD16<Int8> {
        let kmask1: UInt32 = 0x0303_0303, kmask2: UInt32 = 0x0f0f_0f0f
        let a0 = UInt32(littleEndian: scales.loadUnaligned(as: UInt32.self))
        let a1 = UInt32(littleEndian: scales.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        let tmp = UInt32(littleEndian: scales.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        let words: SIMD4<UInt32> = [
            (a0 & kmask2) | (((tmp >> 0) & kmask1) << 4),
            (a1 & kmask2) | (((tmp >> 2) & kmask1) << 4),
            ((a0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4),
            ((a1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4),
        ]
        // Little-endian: byte k of the four words is scale k.
        return unsafeBitCast(words, to: SIMD16<Int8>.self) &- 32
    }

    static func quantize(_ x: UnsafePointer<Float>, _ blocks: Int, _ out: UnsafeMutableRawPointer, importance: UnsafePointer<Float>?) {
        withUnsafeTemporaryAllocation(of: Int8.self, capacity: 256 + 16) { bytes in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 16 * 3) { floats in
            let L = bytes.baseAddress!, Ls = L + 256
            let scales = floats.baseAddress!, weight = scales + 16, sw = weight + 16
            for i in 0..<blocks {
                let xb = x + 256 * i, y = out + i * bytesPerBlock
                for k in 0..<12 { y.setByte(0, scalesOffset + k) }
                if let importance {
                    // quantize_row_q3_K_impl
                    var sumX2: Float = 0
                    for j in 0..<256 { sumX2 += xb[j] * xb[j] }
                    let sigma2 = 2 * sumX2 / 256
                    for j in 0..<16 {
                        let qw = importance + 256 * i + 16 * j
                        for l in 0..<16 { weight[l] = qw[l] * (sigma2 + xb[16 * j + l] * xb[16 * j + l]).squareRoot() }
                        var sumw: Float = 0
                        for l in 0..<16 { sumw += weight[l] }
                        sw[j] = sumw
                        scales[j] = ScaleSearch.qx(16, 4, xb + 16 * j, L + 16 * j, rmseType: 1, weight)
                    }
                    let dBlock = ScaleSearch.qx(16, 32, scales, Ls, rmseType: 1, sw)
                    for j in 0..<16 { packScale(Int32(Ls[j]), j, y) }
                    y.setHalf(dBlock, dOffset)
                } else {
                    // quantize_row_q3_K_ref
                    var maxScale: Float = 0, amax: Float = 0
                    for j in 0..<16 {
                        scales[j] = ScaleSearch.q3(16, 4, xb + 16 * j, L + 16 * j, doRMSE: true)
                        let scale = abs(scales[j])
                        if scale > amax {
                            amax = scale
                            maxScale = scales[j]
                        }
                    }
                    if maxScale != 0 {
                        let iscale = -32 / maxScale
                        for j in 0..<16 {
                            let l = Int8(truncatingIfNeeded: nearestInt(iscale * scales[j]))
                            packScale(max(-32, min(31, Int32(l))) + 32, j, y)
                        }
                        y.setHalf(1 / iscale, dOffset)
                    } else {
                        y.setHalf(0, dOffset)
                    }
                }
                let dAll = UnsafeRawPointer(y).half(dOffset)
                for j in 0..<16 {
                    let packed = UnsafeRawPointer(y) + scalesOffset
                    var sc = Int8(bitPattern: j < 8 ? packed.byte(j) & 0xF : packed.byte(j - 8) >> 4)
                    sc = Int8(truncatingIfNeeded: Int32(sc | Int8(bitPattern: ((packed.byte(8 + j % 4) >> UInt8(2 * (j / 4))) & 3) << 4)) - 32)
                    let d = dAll * Float(sc)
                    if d == 0 { continue }
                    for ii in 0..<16 {
                        L[16 * j + ii] = Int8(max(-4, min(3, nearestInt(xb[16 * j + ii] / d))) + 4)
                    }
                }
                for k in 0..<32 { y.setByte(0, highBitsOffset + k) }
                var m = 0
                var hm: UInt8 = 1
                for j in 0..<256 {
                    if L[j] > 3 {
                        y.orByte(hm, highBitsOffset + m)
                        L[j] -= 4
                    }
                    m += 1
                    if m == 32 {
                        m = 0
                        hm <<= 1
                    }
                }
                for j in stride(from: 0, to: 256, by: 128) {
                    for l in 0..<32 {
                        let packed = UInt8(bitPattern: L[j + l]) | (UInt8(bitPattern: L[j + l + 32]) << 2)
                            | (UInt8(bitPattern: L[j + l + 64]) << 4) | (UInt8(bitPattern: L[j + l + 96]) << 6)
                        y.setByte(packed, quantsOffset + j / 4 + l)
                    }
                }
            }
        }
        }
    }

    /// Stores 6-bit scale `l` (0…63) of sub-block `j` into the 12 scale bytes (zeroed first).
    @inline(__always)
    private static func packScale(_ l: Int32, _ j: Int, _ y: UnsafeMutableRawPointer) {
        if j < 8 {
            y.setByte(UInt8(truncatingIfNeeded: l & 0xF), scalesOffset + j)
        } else {
            y.orByte(UInt8(truncatingIfNeeded: (l & 0xF) << 4), scalesOffset + j - 8)
        }
        y.orByte(UInt8(truncatingIfNeeded: (l >> 4) << Int32(2 * (j / 4))), scalesOffset + j % 4 + 8)
    }

    /// `dequantize_row_q3_K`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        var y = y
        for i in 0..<count {
            let b = blocks + i * bytesPerBlock
            let dAll = b.half(dOffset)
            var q = b + quantsOffset
            let hm = b + highBitsOffset
            var m: UInt8 = 1
            let scales = unpackScales(b + scalesOffset)
            var scale = 0
            for _ in 0..<2 {
                var shift: UInt8 = 0
                for _ in 0..<4 {
                    var dl = dAll * Float(scales[scale])
                    scale += 1
                    for l in 0..<16 {
                        y[l] = dl * Float(Int32((q.byte(l) >> shift) & 3) - (hm.byte(l) & m != 0 ? 0 : 4))
                    }
                    y += 16
                    dl = dAll * Float(scales[scale])
                    scale += 1
                    for l in 0..<16 {
                        y[l] = dl * Float(Int32((q.byte(l + 16) >> shift) & 3) - (hm.byte(l + 16) & m != 0 ? 0 : 4))
                    }
                    y += 16
                    shift += 2
                    m <<= 1
                }
                q += 32
            }
        }
    }
}

/// Q4_K: super-blocks of 256 weights in 8 sub-blocks of 32. Layout (`block_q4_K`, 144
/// bytes): f16 `d` at 0, f16 `dmin` at 2, 12 bytes at 4 holding eight 6-bit scales and
/// eight 6-bit mins (`scaleMin`), then 128 bytes of 4-bit quants at 16 (for each 64
/// weights, 32 bytes: low nibbles the first 32, high nibbles the next 32).
/// Weight = d·scale_j · q − dmin·min_j.
public enum Q4_K {
    @inlinable public static var blockSize: Int { 256 }
    @inlinable public static var bytesPerBlock: Int { 144 }

    /// A super-block's parts: the two f16 scales, the packed 6-bit scales/mins, the nibbles.
    @inlinable @inline(__always)
    public static func parts(_ block: UnsafeRawPointer) -> (d: Float, dmin: Float, packed: UnsafeRawPointer, quants: UnsafeRawPointer) {
        (Float(halfBits: block.loadUnaligned(as: UInt16.self)), Float(halfBits: block.loadUnaligned(fromByteOffset: 2, as: UInt16.self)),
         block + 4, block + 16)
    }

    /// `get_scale_min_k4`: sub-block `j`'s 6-bit scale and min (Q4_K and Q5_K).
    @inlinable @inline(__always)
    public static func scaleMin(_ j: Int, _ q: UnsafeRawPointer) -> (scale: UInt8, min: UInt8) {
        func byte(_ i: Int) -> UInt8 { q.load(fromByteOffset: i, as: UInt8.self) }
        if j < 4 { return (byte(j) & 63, byte(j + 4) & 63) }
        return ((byte(j + 4) & 0xF) | ((byte(j - 4) >> 6) << 4), (byte(j + 4) >> 4) | ((byte(j) >> 6) << 4))
    }

    /// `quantize_row_q4_K_ref` (what llama-quantize runs for Q4_K without an importance matrix).
    public static func quantize(_ x: UnsafeBufferPointer<Float>, into out: UnsafeMutableRawBufferPointer) {
        BlockFormat.q4_K.quantize(x, into: out)
    }

    /// `dequantize_row_q4_K`.
    public static func dequantize(_ q: UnsafeRawBufferPointer, into y: UnsafeMutableBufferPointer<Float>) {
        BlockFormat.q4_K.dequantize(q, into: y)
    }

    static func quantize(_ x: UnsafePointer<Float>, _ blocks: Int, _ out: UnsafeMutableRawPointer, importance: UnsafePointer<Float>?) {
        KQuantsWithMins.quantize(x, blocks, out, importance: importance, nmax: 15)
    }

    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        for b in 0..<count {
            let (d, dmin, packed, quants) = parts(blocks + b * bytesPerBlock)
            let out = y + b * blockSize
            for group in 0..<4 {
                let (s1, m1) = scaleMin(2 * group, packed), (s2, m2) = scaleMin(2 * group + 1, packed)
                let d1 = d * Float(s1), min1 = dmin * Float(m1)
                let d2 = d * Float(s2), min2 = dmin * Float(m2)
                let q = quants + 32 * group, o = out + 64 * group
                for l in 0..<32 { o[l] = d1 * Float(q.byte(l) & 0xF) - min1 }
                for l in 0..<32 { o[32 + l] = d2 * Float(q.byte(l) >> 4) - min2 }
            }
        }
    }
}

/// Q5_K: `block_q5_K`, 176 bytes: f16 `d` at 0, f16 `dmin` at 2, the 12 bytes of 6-bit
/// scales and mins at 4 (as Q4_K, `Q4_K.scaleMin`), 32 bytes of fifth bits at 16 (bit
/// 2g / 2g+1 of byte l: weight 64·g + l / 64·g + 32 + l), 128 bytes of low nibbles at 48
/// (as Q4_K). Weight = d·scale_j · q − dmin·min_j.
public enum Q5_K {
    @inlinable public static var blockSize: Int { 256 }
    @inlinable public static var bytesPerBlock: Int { 176 }
    @inlinable public static var scalesOffset: Int { 4 }
    @inlinable public static var highBitsOffset: Int { 16 }
    @inlinable public static var quantsOffset: Int { 48 }

    static func quantize(_ x: UnsafePointer<Float>, _ blocks: Int, _ out: UnsafeMutableRawPointer, importance: UnsafePointer<Float>?) {
        KQuantsWithMins.quantize(x, blocks, out, importance: importance, nmax: 31)
    }

    /// `dequantize_row_q5_K`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        var y = y
        for i in 0..<count {
            let b = blocks + i * bytesPerBlock
            var ql = b + quantsOffset
            let qh = b + highBitsOffset
            let d = b.half(0), minimum = b.half(2)
            var u1: UInt8 = 1, u2: UInt8 = 2
            for group in 0..<4 {
                let (s1, m1) = Q4_K.scaleMin(2 * group, b + scalesOffset), (s2, m2) = Q4_K.scaleMin(2 * group + 1, b + scalesOffset)
                let d1 = d * Float(s1), min1 = minimum * Float(m1)
                let d2 = d * Float(s2), min2 = minimum * Float(m2)
                for l in 0..<32 { y[l] = d1 * Float(Int32(ql.byte(l) & 0xF) + (qh.byte(l) & u1 != 0 ? 16 : 0)) - min1 }
                y += 32
                for l in 0..<32 { y[l] = d2 * Float(Int32(ql.byte(l) >> 4) + (qh.byte(l) & u2 != 0 ? 16 : 0)) - min2 }
                y += 32
                ql += 32
                u1 <<= 2
                u2 <<= 2
            }
        }
    }
}

/// Q6_K: `block_q6_K`, 210 bytes: 128 bytes of low nibbles at 0 (for each 128 weights, 64
/// bytes: byte l holds weights l (low) and 64 + l (high), byte 32 + l weights 32 + l and
/// 96 + l), 64 bytes of high 2-bit pairs at 128 (for each 128 weights, 32 bytes: bits 2s
/// of byte l for weight 32·s + l), sixteen int8 scales at 192, f16 `d` at 208.
/// Weight = d·scale_j · (q − 32).
public enum Q6_K {
    @inlinable public static var blockSize: Int { 256 }
    @inlinable public static var bytesPerBlock: Int { 210 }
    @inlinable public static var highBitsOffset: Int { 128 }
    @inlinable public static var scalesOffset: Int { 192 }
    @inlinable public static var dOffset: Int { 208 }

    static func quantize(_ x: UnsafePointer<Float>, _ blocks: Int, _ out: UnsafeMutableRawPointer, importance: UnsafePointer<Float>?) {
        withUnsafeTemporaryAllocation(of: Int8.self, capacity: 256) { bytes in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 16) { floats in
            let L = bytes.baseAddress!, scales = floats.baseAddress!
            for i in 0..<blocks {
                let xb = x + 256 * i, y = out + i * bytesPerBlock
                // quantize_row_q6_K_ref and quantize_row_q6_K_impl differ only in the weights
                // make_qx_quants gets (x² without importance, the importance itself with it).
                var maxScale: Float = 0, maxAbsScale: Float = 0
                for ib in 0..<16 {
                    let scale = ScaleSearch.qx(16, 32, xb + 16 * ib, L + 16 * ib, rmseType: 1, importance.map { $0 + 256 * i + 16 * ib })
                    scales[ib] = scale
                    let absScale = abs(scale)
                    if absScale > maxAbsScale {
                        maxAbsScale = absScale
                        maxScale = scale
                    }
                }
                if maxAbsScale < ScaleSearch.groupMaxEps {
                    y.initializeMemory(as: UInt8.self, repeating: 0, count: bytesPerBlock)
                    y.setHalf(0, dOffset)
                    continue
                }
                let iscale = -128 / maxScale
                let d = y.setHalf(1 / iscale, dOffset)
                for ib in 0..<16 {
                    y.storeBytes(of: Int8(truncatingIfNeeded: min(127, nearestInt(iscale * scales[ib]))), toByteOffset: scalesOffset + ib, as: Int8.self)
                }
                for j in 0..<16 {
                    let dj = d * Float(y.load(fromByteOffset: scalesOffset + j, as: Int8.self))
                    if dj == 0 { continue }
                    for ii in 0..<16 {
                        L[16 * j + ii] = Int8(max(-32, min(31, nearestInt(xb[16 * j + ii] / dj))) + 32)
                    }
                }
                var ql = y, qh = y + highBitsOffset
                for j in stride(from: 0, to: 256, by: 128) {
                    for l in 0..<32 {
                        let q1 = UInt8(bitPattern: L[j + l]) & 0xF, q2 = UInt8(bitPattern: L[j + l + 32]) & 0xF
                        let q3 = UInt8(bitPattern: L[j + l + 64]) & 0xF, q4 = UInt8(bitPattern: L[j + l + 96]) & 0xF
                        ql.setByte(q1 | (q3 << 4), l)
                        ql.setByte(q2 | (q4 << 4), l + 32)
                        let h = (UInt8(bitPattern: L[j + l]) >> 4) | ((UInt8(bitPattern: L[j + l + 32]) >> 4) << 2)
                            | ((UInt8(bitPattern: L[j + l + 64]) >> 4) << 4) | ((UInt8(bitPattern: L[j + l + 96]) >> 4) << 6)
                        qh.setByte(h, l)
                    }
                    ql += 64
                    qh += 32
                }
            }
        }
        }
    }

    /// `dequantize_row_q6_K`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        var y = y
        for i in 0..<count {
            let b = blocks + i * bytesPerBlock
            let d = b.half(dOffset)
            var ql = b, qh = b + highBitsOffset, sc = b + scalesOffset
            for _ in 0..<2 {
                for l in 0..<32 {
                    let s = l / 16
                    let q1 = Int8(bitPattern: (ql.byte(l) & 0xF) | (((qh.byte(l) >> 0) & 3) << 4)) - 32
                    let q2 = Int8(bitPattern: (ql.byte(l + 32) & 0xF) | (((qh.byte(l) >> 2) & 3) << 4)) - 32
                    let q3 = Int8(bitPattern: (ql.byte(l) >> 4) | (((qh.byte(l) >> 4) & 3) << 4)) - 32
                    let q4 = Int8(bitPattern: (ql.byte(l + 32) >> 4) | (((qh.byte(l) >> 6) & 3) << 4)) - 32
                    y[l] = d * Float(sc.load(fromByteOffset: s, as: Int8.self)) * Float(q1)
                    y[l + 32] = d * Float(sc.load(fromByteOffset: s + 2, as: Int8.self)) * Float(q2)
                    y[l + 64] = d * Float(sc.load(fromByteOffset: s + 4, as: Int8.self)) * Float(q3)
                    y[l + 96] = d * Float(sc.load(fromByteOffset: s + 6, as: Int8.self)) * Float(q4)
                }
                y += 128
                ql += 64
                qh += 32
                sc += 8
            }
        }
    }
}

/// The Q4_K and Q5_K encoders, which differ only in `nmax` (15 or 31), the reference's
/// search parameters and how the quants are packed.
enum KQuantsWithMins {
    static func quantize(_ x: UnsafePointer<Float>, _ blocks: Int, _ out: UnsafeMutableRawPointer, importance: UnsafePointer<Float>?,
                         nmax: Int32) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 256 + 32 + 16) { bytes in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 32 + 3 * 8) { floats in
            let L = bytes.baseAddress!, Laux = L + 256, Ls = Laux + 32, Lm = Ls + 8
            let weights = floats.baseAddress!, mins = weights + 32, scales = mins + 8, sw = scales + 8
            for i in 0..<blocks {
                let xb = x + 256 * i, y = out + i * (nmax == 15 ? Q4_K.bytesPerBlock : Q5_K.bytesPerBlock)
                let packed = y + 4
                if let importance {
                    // quantize_row_q4_K_impl / quantize_row_q5_K_impl
                    var sumX2: Float = 0
                    for l in 0..<256 { sumX2 += xb[l] * xb[l] }
                    let sigma2 = 2 * sumX2 / 256
                    for j in 0..<8 {
                        let qw = importance + 256 * i + 32 * j
                        for l in 0..<32 { weights[l] = qw[l] * (sigma2 + xb[32 * j + l] * xb[32 * j + l]).squareRoot() }
                        var sumw: Float = 0
                        for l in 0..<32 { sumw += weights[l] }
                        sw[j] = sumw
                        (scales[j], mins[j]) = ScaleSearch.qkx3(32, nmax, xb + 32 * j, weights, L + 32 * j, Laux,
                                                                rmin: -0.9, rdelta: 0.05, nstep: 36, useMad: false)
                    }
                    let dBlock = ScaleSearch.qp(8, 63, scales, Ls, sw)
                    let mBlock = ScaleSearch.qp(8, 63, mins, Lm, sw)
                    // Only quantize_row_q5_K_impl clamps to 63 (make_qp_quants already keeps ≤ 63).
                    for j in 0..<8 { packScaleMin(nmax == 31 ? min(63, Ls[j]) : Ls[j], nmax == 31 ? min(63, Lm[j]) : Lm[j], j, packed) }
                    y.setHalf(dBlock, 0)
                    y.setHalf(mBlock, 2)
                } else {
                    // quantize_row_q4_K_ref / quantize_row_q5_K_ref
                    var maxScale: Float = 0, maxMin: Float = 0
                    for j in 0..<8 {
                        var sumX2: Float = 0
                        for l in 0..<32 { sumX2 += xb[32 * j + l] * xb[32 * j + l] }
                        let avX = (sumX2 / 32).squareRoot()
                        for l in 0..<32 { weights[l] = avX + abs(xb[32 * j + l]) }
                        (scales[j], mins[j]) = ScaleSearch.qkx2(32, nmax, xb + 32 * j, weights, L + 32 * j, Laux,
                                                                rmin: nmax == 15 ? -1 : -0.5, rdelta: 0.1, nstep: nmax == 15 ? 20 : 15,
                                                                useMad: false)
                        if scales[j] > maxScale { maxScale = scales[j] }
                        if mins[j] > maxMin { maxMin = mins[j] }
                    }
                    let invScale: Float = maxScale > 0 ? 63 / maxScale : 0
                    let invMin: Float = maxMin > 0 ? 63 / maxMin : 0
                    for j in 0..<8 {
                        let ls = min(63, UInt8(truncatingIfNeeded: nearestInt(invScale * scales[j])))
                        let lm = min(63, UInt8(truncatingIfNeeded: nearestInt(invMin * mins[j])))
                        packScaleMin(ls, lm, j, packed)
                    }
                    y.setHalf(maxScale / 63, 0)
                    y.setHalf(maxMin / 63, 2)
                }
                let dAll = UnsafeRawPointer(y).half(0), minAll = UnsafeRawPointer(y).half(2)
                for j in 0..<8 {
                    let (sc, m) = Q4_K.scaleMin(j, packed)
                    let d = dAll * Float(sc)
                    if d == 0 { continue }  // keeps the levels the search chose, as ggml does
                    let dm = minAll * Float(m)
                    for ii in 0..<32 {
                        L[32 * j + ii] = UInt8(max(0, min(nmax, nearestInt((xb[32 * j + ii] + dm) / d))))
                    }
                }
                if nmax == 15 {
                    for group in 0..<4 {
                        for l in 0..<32 { y.setByte(L[64 * group + l] | (L[64 * group + l + 32] << 4), 16 + 32 * group + l) }
                    }
                } else {
                    let qh = y + Q5_K.highBitsOffset, ql = y + Q5_K.quantsOffset
                    for k in 0..<32 { qh.setByte(0, k) }
                    var m1: UInt8 = 1, m2: UInt8 = 2
                    for group in 0..<4 {
                        for j in 0..<32 {
                            var l1 = L[64 * group + j]
                            if l1 > 15 {
                                l1 -= 16
                                qh.orByte(m1, j)
                            }
                            var l2 = L[64 * group + j + 32]
                            if l2 > 15 {
                                l2 -= 16
                                qh.orByte(m2, j)
                            }
                            ql.setByte(l1 | (l2 << 4), 32 * group + j)
                        }
                        m1 <<= 2
                        m2 <<= 2
                    }
                }
            }
        }
        }
    }

    /// Packs sub-block `j`'s 6-bit scale and min as `get_scale_min_k4` reads them.
    @inline(__always)
    static func packScaleMin(_ ls: UInt8, _ lm: UInt8, _ j: Int, _ packed: UnsafeMutableRawPointer) {
        if j < 4 {
            packed.setByte(ls, j)
            packed.setByte(lm, j + 4)
        } else {
            packed.setByte((ls & 0xF) | ((lm & 0xF) << 4), j + 4)
            packed.orByte((ls >> 4) << 6, j - 4)
            packed.orByte((lm >> 4) << 6, j)
        }
    }
}

// MARK: - ggml-quants.c's scale searches

/// The scale searches the k-quant (and Q4_0…Q5_1 importance) encoders share, mirrored
/// operation by operation from ggml-quants.c.
enum ScaleSearch {
    /// `GROUP_MAX_EPS`: below this max |x| a group is all zero.
    static let groupMaxEps: Float = 1e-15

    /// ggml's weight for `make_qx_quants` without `qw`.
    @inline(__always)
    private static func rmseWeight(_ rmseType: Int, _ x: Float) -> Float {
        rmseType == 1 ? x * x : rmseType == 2 ? 1 : rmseType == 3 ? abs(x) : abs(x).squareRoot()
    }

    /// `make_qx_quants`: a symmetric scale for `n` values in levels −nmax…nmax−1 (stored
    /// + nmax in `L`), searching 18 nearby scales for the best weighted fit.
    static func qx(_ n: Int, _ nmax: Int32, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<Int8>, rmseType: Int,
                   _ qw: UnsafePointer<Float>?) -> Float {
        var maximum: Float = 0, amax: Float = 0
        for i in 0..<n {
            let ax = abs(x[i])
            if ax > amax {
                amax = ax
                maximum = x[i]
            }
        }
        if amax < groupMaxEps {
            for i in 0..<n { L[i] = 0 }
            return 0
        }
        var iscale = Float(-nmax) / maximum
        if rmseType == 0 {
            for i in 0..<n {
                let l = nearestInt(iscale * x[i])
                L[i] = Int8(truncatingIfNeeded: nmax + max(-nmax, min(nmax - 1, l)))
            }
            return 1 / iscale
        }
        var rmseType = rmseType, returnEarly = false
        if rmseType < 0 {
            rmseType = -rmseType
            returnEarly = true
        }
        var sumlx: Float = 0, suml2: Float = 0
        for i in 0..<n {
            let l = max(-nmax, min(nmax - 1, nearestInt(iscale * x[i])))
            L[i] = Int8(truncatingIfNeeded: l + nmax)
            let w = qw?[i] ?? rmseWeight(rmseType, x[i])
            sumlx += w * x[i] * Float(l)
            suml2 += w * Float(l) * Float(l)
        }
        var scale: Float = suml2 != 0 ? sumlx / suml2 : 0
        if returnEarly { return suml2 > 0 ? 0.5 * (scale + 1 / iscale) : 1 / iscale }
        var best = scale * sumlx
        for step in -9...9 where step != 0 {
            iscale = -(Float(nmax) + 0.1 * Float(step)) / maximum
            sumlx = 0
            suml2 = 0
            for i in 0..<n {
                let l = max(-nmax, min(nmax - 1, nearestInt(iscale * x[i])))
                let w = qw?[i] ?? rmseWeight(rmseType, x[i])
                sumlx += w * x[i] * Float(l)
                suml2 += w * Float(l) * Float(l)
            }
            if suml2 > 0 && sumlx * sumlx > best * suml2 {
                for i in 0..<n {
                    let l = nearestInt(iscale * x[i])
                    L[i] = Int8(truncatingIfNeeded: nmax + max(-nmax, min(nmax - 1, l)))
                }
                scale = sumlx / suml2
                best = scale * sumlx
            }
        }
        return scale
    }

    /// `make_q3_quants`: Q3_K's symmetric scale, refined by moving single levels (x²-weighted).
    static func q3(_ n: Int, _ nmax: Int32, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<Int8>, doRMSE: Bool) -> Float {
        var maximum: Float = 0, amax: Float = 0
        for i in 0..<n {
            let ax = abs(x[i])
            if ax > amax {
                amax = ax
                maximum = x[i]
            }
        }
        if amax < groupMaxEps {
            for i in 0..<n { L[i] = 0 }
            return 0
        }
        let iscale = Float(-nmax) / maximum
        if doRMSE {
            var sumlx: Float = 0, suml2: Float = 0
            for i in 0..<n {
                let l = max(-nmax, min(nmax - 1, nearestInt(iscale * x[i])))
                L[i] = Int8(truncatingIfNeeded: l)
                let w = x[i] * x[i]
                sumlx += w * x[i] * Float(l)
                suml2 += w * Float(l) * Float(l)
            }
            for _ in 0..<5 {
                var changed = 0
                for i in 0..<n {
                    let w = x[i] * x[i]
                    var slx = sumlx - w * x[i] * Float(L[i])
                    if slx > 0 {
                        var sl2 = suml2 - w * Float(L[i]) * Float(L[i])
                        let newL = max(-nmax, min(nmax - 1, nearestInt(x[i] * sl2 / slx)))
                        if newL != Int32(L[i]) {
                            slx += w * x[i] * Float(newL)
                            sl2 += w * Float(newL) * Float(newL)
                            if sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                                L[i] = Int8(truncatingIfNeeded: newL)
                                sumlx = slx
                                suml2 = sl2
                                changed += 1
                            }
                        }
                    }
                }
                if changed == 0 { break }
            }
            for i in 0..<n { L[i] = L[i] &+ Int8(truncatingIfNeeded: nmax) }
            return suml2 > 0 ? sumlx / suml2 : 0
        }
        for i in 0..<n {
            let l = max(-nmax, min(nmax - 1, nearestInt(iscale * x[i])))
            L[i] = Int8(truncatingIfNeeded: l + nmax)
        }
        return 1 / iscale
    }

    /// `make_qkx2_quants`: scale and min (returned as −min, ≥ 0) for `n` values in levels
    /// 0…nmax, searching `nstep + 1` candidate scales for the least weighted error.
    static func qkx2(_ n: Int, _ nmax: Int32, _ x: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
                     _ L: UnsafeMutablePointer<UInt8>, _ Laux: UnsafeMutablePointer<UInt8>,
                     rmin: Float, rdelta: Float, nstep: Int, useMad: Bool) -> (scale: Float, min: Float) {
        var minimum = x[0], maximum = x[0]
        var sumW = weights[0]
        var sumX = sumW * x[0]
        for i in 1..<n {
            if x[i] < minimum { minimum = x[i] }
            if x[i] > maximum { maximum = x[i] }
            let w = weights[i]
            sumW += w
            sumX += w * x[i]
        }
        if minimum > 0 { minimum = 0 }
        if maximum == minimum {
            for i in 0..<n { L[i] = 0 }
            return (0, -minimum)
        }
        var iscale = Float(nmax) / (maximum - minimum)
        var scale = 1 / iscale
        var bestError: Float = 0
        for i in 0..<n {
            let l = max(0, min(nmax, nearestInt(iscale * (x[i] - minimum))))
            L[i] = UInt8(l)
            var diff = scale * Float(L[i]) + minimum - x[i]
            diff = useMad ? abs(diff) : diff * diff
            bestError += weights[i] * diff
        }
        if nstep < 1 { return (scale, -minimum) }
        for step in 0...nstep {
            iscale = (rmin + rdelta * Float(step) + Float(nmax)) / (maximum - minimum)
            var sumL: Float = 0, sumL2: Float = 0, sumXL: Float = 0
            for i in 0..<n {
                let l = max(0, min(nmax, nearestInt(iscale * (x[i] - minimum))))
                Laux[i] = UInt8(l)
                let w = weights[i], fl = Float(l)
                sumL += w * fl
                sumL2 += w * fl * fl
                sumXL += w * fl * x[i]
            }
            let det = sumW * sumL2 - sumL * sumL
            if det > 0 {
                var thisScale = (sumW * sumXL - sumX * sumL) / det
                var thisMin = (sumL2 * sumX - sumL * sumXL) / det
                if thisMin > 0 {
                    thisMin = 0
                    thisScale = sumXL / sumL2
                }
                var error: Float = 0
                for i in 0..<n {
                    var diff = thisScale * Float(Laux[i]) + thisMin - x[i]
                    diff = useMad ? abs(diff) : diff * diff
                    error += weights[i] * diff
                }
                if error < bestError {
                    for i in 0..<n { L[i] = Laux[i] }
                    bestError = error
                    scale = thisScale
                    minimum = thisMin
                }
            }
        }
        return (scale, -minimum)
    }

    /// `make_qkx3_quants`: as `qkx2`, for the importance-weighted encoders (nil weights: x²).
    static func qkx3(_ n: Int, _ nmax: Int32, _ x: UnsafePointer<Float>, _ weights: UnsafePointer<Float>?,
                     _ L: UnsafeMutablePointer<UInt8>, _ Laux: UnsafeMutablePointer<UInt8>,
                     rmin: Float, rdelta: Float, nstep: Int, useMad: Bool) -> (scale: Float, min: Float) {
        @inline(__always) func weight(_ i: Int) -> Float { weights?[i] ?? x[i] * x[i] }
        var minimum = x[0], maximum = x[0]
        var sumW = weight(0)
        var sumX = sumW * x[0]
        for i in 1..<n {
            if x[i] < minimum { minimum = x[i] }
            if x[i] > maximum { maximum = x[i] }
            let w = weight(i)
            sumW += w
            sumX += w * x[i]
        }
        if minimum > 0 { minimum = 0 }
        if maximum <= minimum {
            for i in 0..<n { L[i] = 0 }
            return (0, -minimum)
        }
        var iscale = Float(nmax) / (maximum - minimum)
        var scale = 1 / iscale
        var bestMad: Float = 0
        for i in 0..<n {
            let l = max(0, min(nmax, nearestInt(iscale * (x[i] - minimum))))
            L[i] = UInt8(l)
            var diff = scale * Float(L[i]) + minimum - x[i]
            diff = useMad ? abs(diff) : diff * diff
            bestMad += weight(i) * diff
        }
        if nstep < 1 { return (scale, -minimum) }
        for step in 0...nstep {
            iscale = (rmin + rdelta * Float(step) + Float(nmax)) / (maximum - minimum)
            var sumL: Float = 0, sumL2: Float = 0, sumXL: Float = 0
            for i in 0..<n {
                let l = max(0, min(nmax, nearestInt(iscale * (x[i] - minimum))))
                Laux[i] = UInt8(l)
                let w = weight(i), fl = Float(l)
                sumL += w * fl
                sumL2 += w * fl * fl
                sumXL += w * fl * x[i]
            }
            let det = sumW * sumL2 - sumL * sumL
            if det > 0 {
                var thisScale = (sumW * sumXL - sumX * sumL) / det
                var thisMin = (sumL2 * sumX - sumL * sumXL) / det
                if thisMin > 0 {
                    thisMin = 0
                    thisScale = sumXL / sumL2
                }
                var mad: Float = 0
                for i in 0..<n {
                    var diff = thisScale * Float(Laux[i]) + thisMin - x[i]
                    diff = useMad ? abs(diff) : diff * diff
                    mad += weight(i) * diff
                }
                if mad < bestMad {
                    for i in 0..<n { L[i] = Laux[i] }
                    bestMad = mad
                    scale = thisScale
                    minimum = thisMin
                }
            }
        }
        return (scale, -minimum)
    }

    /// `make_qp_quants`: a positive scale for `n` non-negative values (the sub-block scales
    /// or mins of an importance-weighted super-block) in levels 0…nmax.
    static func qp(_ n: Int, _ nmax: Int32, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<UInt8>,
                   _ quantWeights: UnsafePointer<Float>) -> Float {
        var maximum: Float = 0
        for i in 0..<n { maximum = max(maximum, x[i]) }
        if maximum < groupMaxEps {
            for i in 0..<n { L[i] = 0 }
            return 0
        }
        var iscale = Float(nmax) / maximum
        for i in 0..<n { L[i] = UInt8(truncatingIfNeeded: nearestInt(iscale * x[i])) }
        let scale = 1 / iscale
        var bestMSE: Float = 0
        for i in 0..<n {
            let diff = x[i] - scale * Float(L[i])
            bestMSE += quantWeights[i] * diff * diff
        }
        for step in -4...4 where step != 0 {
            let iscaleStep = (0.1 * Float(step) + Float(nmax)) / maximum
            let scaleStep = 1 / iscaleStep
            var mse: Float = 0
            for i in 0..<n {
                let l = min(nmax, nearestInt(iscaleStep * x[i]))
                let diff = x[i] - scaleStep * Float(l)
                mse += quantWeights[i] * diff * diff
            }
            if mse < bestMSE {
                bestMSE = mse
                iscale = iscaleStep
            }
        }
        var sumlx: Float = 0, suml2: Float = 0
        for i in 0..<n {
            let l = min(nmax, nearestInt(iscale * x[i]))
            L[i] = UInt8(truncatingIfNeeded: l)
            let w = quantWeights[i]
            sumlx += w * x[i] * Float(l)
            suml2 += w * Float(l) * Float(l)
        }
        for _ in 0..<5 {
            var changed = 0
            for i in 0..<n {
                let w = quantWeights[i]
                var slx = sumlx - w * x[i] * Float(L[i])
                var sl2 = suml2 - w * Float(L[i]) * Float(L[i])
                if slx > 0 && sl2 > 0 {
                    let newL = min(nmax, nearestInt(x[i] * sl2 / slx))
                    if newL != Int32(L[i]) {
                        slx += w * x[i] * Float(newL)
                        sl2 += w * Float(newL) * Float(newL)
                        if slx * slx * suml2 > sumlx * sumlx * sl2 {
                            L[i] = UInt8(truncatingIfNeeded: newL)
                            sumlx = slx
                            suml2 = sl2
                            changed += 1
                        }
                    }
                }
            }
            if changed == 0 { break }
        }
        return suml2 > 0 ? sumlx / suml2 : 0
    }
}
