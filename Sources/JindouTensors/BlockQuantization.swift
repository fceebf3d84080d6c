// GGUF / ggml block-quantised formats Q8_0 and Q4_K, bit-compatible with llama.cpp
// (ggml/src/ggml-common.h for the layouts, ggml-quants.c for the reference encoders).
//
// Encoding mirrors ggml's `quantize_row_*_ref` operation by operation (same float
// operations in the same order, no fused multiply-add), so it produces the same bytes;
// decoding mirrors `dequantize_row_*` and the `gguf` Python package. Both are tested bit
// for bit against fixtures those references wrote (tools/fixture_quants.py).
//
// Bytes read per weight: Q8_0 34/32 = 1.0625, Q4_K 144/256 = 0.5625 (bf16: 2).

/// A ggml block format: how many weights a block holds and its size in bytes.
public enum BlockFormat: String, Sendable, CaseIterable, Codable {
    case q8_0
    case q4_K = "q4_k"

    /// Weights per block.
    public var blockSize: Int {
        switch self {
        case .q8_0: Q8_0.blockSize
        case .q4_K: Q4_K.blockSize
        }
    }

    /// Bytes per block.
    public var bytesPerBlock: Int {
        switch self {
        case .q8_0: Q8_0.bytesPerBlock
        case .q4_K: Q4_K.bytesPerBlock
        }
    }

    /// Bytes of a row of `columns` weights, or nil when `columns` is not a whole number of blocks.
    public func rowBytes(columns: Int) -> Int? {
        columns % blockSize == 0 ? columns / blockSize * bytesPerBlock : nil
    }

    /// Encodes `x` (a whole number of blocks) into `out` (`rowBytes(columns: x.count)` bytes).
    public func quantize(_ x: UnsafeBufferPointer<Float>, into out: UnsafeMutableRawBufferPointer) {
        switch self {
        case .q8_0: Q8_0.quantize(x, into: out)
        case .q4_K: Q4_K.quantize(x, into: out)
        }
    }

    /// Decodes `q` into `y` (`y.count` weights).
    public func dequantize(_ q: UnsafeRawBufferPointer, into y: UnsafeMutableBufferPointer<Float>) {
        switch self {
        case .q8_0: Q8_0.dequantize(q, into: y)
        case .q4_K: Q4_K.dequantize(q, into: y)
        }
    }
}

/// Q8_0: blocks of 32 weights, an f16 scale `d` then 32 signed bytes; weight = q · d.
public enum Q8_0 {
    @inlinable public static var blockSize: Int { 32 }
    @inlinable public static var bytesPerBlock: Int { 34 }

    /// `quantize_row_q8_0_ref`: d = max|x| / 127, q = round-half-away(x / d).
    public static func quantize(_ x: UnsafeBufferPointer<Float>, into out: UnsafeMutableRawBufferPointer) {
        precondition(x.count % blockSize == 0 && out.count >= x.count / blockSize * bytesPerBlock, "Q8_0: whole blocks only")
        for b in 0..<(x.count / blockSize) {
            let base = b * blockSize
            var amax: Float = 0
            for j in 0..<blockSize { amax = max(amax, abs(x[base + j])) }
            let d = amax / 127
            let id: Float = d != 0 ? 1 / d : 0
            let block = out.baseAddress! + b * bytesPerBlock
            block.storeBytes(of: Float16(d).bitPattern.littleEndian, as: UInt16.self)
            for j in 0..<blockSize {
                let q = (x[base + j] * id).rounded(.toNearestOrAwayFromZero)
                block.storeBytes(of: Int8(q), toByteOffset: 2 + j, as: Int8.self)
            }
        }
    }

    public static func dequantize(_ q: UnsafeRawBufferPointer, into y: UnsafeMutableBufferPointer<Float>) {
        precondition(y.count % blockSize == 0 && q.count >= y.count / blockSize * bytesPerBlock, "Q8_0: whole blocks only")
        for b in 0..<(y.count / blockSize) {
            let block = q.baseAddress! + b * bytesPerBlock
            let d = Float(halfBits: block.loadUnaligned(as: UInt16.self))
            for j in 0..<blockSize {
                y[b * blockSize + j] = Float(block.load(fromByteOffset: 2 + j, as: Int8.self)) * d
            }
        }
    }
}

/// Q4_K: super-blocks of 256 weights in 8 sub-blocks of 32. Layout (144 bytes): f16 `d`,
/// f16 `dmin`, 12 bytes holding eight 6-bit scales and eight 6-bit mins, then 128 bytes of
/// 4-bit quants (for each 64 weights, 32 bytes: low nibbles the first 32, high nibbles the
/// next 32). Weight = d·scale_j · q − dmin·min_j.
public enum Q4_K {
    @inlinable public static var blockSize: Int { 256 }
    @inlinable public static var bytesPerBlock: Int { 144 }

    /// ggml's `nearest_int`: round to nearest, ties to even, by the 1.5·2^23 trick.
    @inline(__always)
    static func nearestInt(_ value: Float) -> Int32 {
        let shifted = value + 12_582_912
        return Int32(bitPattern: shifted.bitPattern & 0x007F_FFFF) - 0x0040_0000
    }

    /// A super-block's parts: the two f16 scales, the packed 6-bit scales/mins, the nibbles.
    @inlinable @inline(__always)
    public static func parts(_ block: UnsafeRawPointer) -> (d: Float, dmin: Float, packed: UnsafeRawPointer, quants: UnsafeRawPointer) {
        (Float(halfBits: block.loadUnaligned(as: UInt16.self)), Float(halfBits: block.loadUnaligned(fromByteOffset: 2, as: UInt16.self)),
         block + 4, block + 16)
    }

    /// `get_scale_min_k4`: sub-block `j`'s 6-bit scale and min.
    @inlinable @inline(__always)
    public static func scaleMin(_ j: Int, _ q: UnsafeRawPointer) -> (scale: UInt8, min: UInt8) {
        func byte(_ i: Int) -> UInt8 { q.load(fromByteOffset: i, as: UInt8.self) }
        if j < 4 { return (byte(j) & 63, byte(j + 4) & 63) }
        return ((byte(j + 4) & 0xF) | ((byte(j - 4) >> 6) << 4), (byte(j + 4) >> 4) | ((byte(j) >> 6) << 4))
    }

    /// `make_qkx2_quants(32, 15, x, weights, L, &min, Laux, -1, 0.1, 20, false)`: the
    /// scale and (negated) min of one sub-block, searching 21 candidate scales for the
    /// least weighted squared error.
    static func subBlockScaleMin(_ x: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
                                 _ levels: UnsafeMutablePointer<UInt8>, _ aux: UnsafeMutablePointer<UInt8>) -> (scale: Float, min: Float) {
        let n = 32, nmax: Int32 = 15
        let rmin: Float = -1, rdelta: Float = 0.1, nstep = 20
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
            for i in 0..<n { levels[i] = 0 }
            return (0, -minimum)
        }
        var iscale = Float(nmax) / (maximum - minimum)
        var scale = 1 / iscale
        var bestError: Float = 0
        for i in 0..<n {
            let l = max(0, min(nmax, nearestInt(iscale * (x[i] - minimum))))
            levels[i] = UInt8(l)
            let diff = scale * Float(l) + minimum - x[i]
            bestError += weights[i] * (diff * diff)
        }
        for step in 0...nstep {
            iscale = (rmin + rdelta * Float(step) + Float(nmax)) / (maximum - minimum)
            var sumL: Float = 0, sumL2: Float = 0, sumXL: Float = 0
            for i in 0..<n {
                let l = max(0, min(nmax, nearestInt(iscale * (x[i] - minimum))))
                aux[i] = UInt8(l)
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
                    let diff = thisScale * Float(aux[i]) + thisMin - x[i]
                    error += weights[i] * (diff * diff)
                }
                if error < bestError {
                    for i in 0..<n { levels[i] = aux[i] }
                    bestError = error
                    scale = thisScale
                    minimum = thisMin
                }
            }
        }
        return (scale, -minimum)
    }

    /// `quantize_row_q4_K_ref` (what llama-quantize uses without an importance matrix).
    public static func quantize(_ x: UnsafeBufferPointer<Float>, into out: UnsafeMutableRawBufferPointer) {
        precondition(x.count % blockSize == 0 && out.count >= x.count / blockSize * bytesPerBlock, "Q4_K: whole blocks only")
        var levels = [UInt8](repeating: 0, count: blockSize)
        var aux = [UInt8](repeating: 0, count: 32)
        var weights = [Float](repeating: 0, count: 32)
        var scales = [Float](repeating: 0, count: 8)
        var mins = [Float](repeating: 0, count: 8)
        levels.withUnsafeMutableBufferPointer { L in
        aux.withUnsafeMutableBufferPointer { aux in
        weights.withUnsafeMutableBufferPointer { weights in
            for b in 0..<(x.count / blockSize) {
                let xb = x.baseAddress! + b * blockSize
                let block = out.baseAddress! + b * bytesPerBlock
                var maxScale: Float = 0, maxMin: Float = 0
                for j in 0..<8 {
                    var sumX2: Float = 0
                    for l in 0..<32 { sumX2 += xb[32 * j + l] * xb[32 * j + l] }
                    let avX = (sumX2 / 32).squareRoot()
                    for l in 0..<32 { weights[l] = avX + abs(xb[32 * j + l]) }
                    (scales[j], mins[j]) = subBlockScaleMin(xb + 32 * j, weights.baseAddress!, L.baseAddress! + 32 * j, aux.baseAddress!)
                    if scales[j] > maxScale { maxScale = scales[j] }
                    if mins[j] > maxMin { maxMin = mins[j] }
                }
                let invScale: Float = maxScale > 0 ? 63 / maxScale : 0
                let invMin: Float = maxMin > 0 ? 63 / maxMin : 0
                let packed = block + 4
                for j in 0..<8 {
                    let ls = min(63, UInt8(truncatingIfNeeded: nearestInt(invScale * scales[j])))
                    let lm = min(63, UInt8(truncatingIfNeeded: nearestInt(invMin * mins[j])))
                    if j < 4 {
                        packed.storeBytes(of: ls, toByteOffset: j, as: UInt8.self)
                        packed.storeBytes(of: lm, toByteOffset: j + 4, as: UInt8.self)
                    } else {
                        packed.storeBytes(of: (ls & 0xF) | ((lm & 0xF) << 4), toByteOffset: j + 4, as: UInt8.self)
                        packed.storeBytes(of: packed.load(fromByteOffset: j - 4, as: UInt8.self) | ((ls >> 4) << 6),
                                          toByteOffset: j - 4, as: UInt8.self)
                        packed.storeBytes(of: packed.load(fromByteOffset: j, as: UInt8.self) | ((lm >> 4) << 6),
                                          toByteOffset: j, as: UInt8.self)
                    }
                }
                let dHalf = Float16(maxScale / 63), dminHalf = Float16(maxMin / 63)
                block.storeBytes(of: dHalf.bitPattern.littleEndian, as: UInt16.self)
                block.storeBytes(of: dminHalf.bitPattern.littleEndian, toByteOffset: 2, as: UInt16.self)
                for j in 0..<8 {
                    let (sc, m) = scaleMin(j, packed)
                    let d = Float(dHalf) * Float(sc)
                    if d == 0 { continue }  // keeps the levels the search chose, as ggml does
                    let dm = Float(dminHalf) * Float(m)
                    for i in 0..<32 {
                        L[32 * j + i] = UInt8(max(0, min(15, nearestInt((xb[32 * j + i] + dm) / d))))
                    }
                }
                let quants = block + 16
                for group in 0..<4 {
                    for l in 0..<32 {
                        quants.storeBytes(of: L[64 * group + l] | (L[64 * group + l + 32] << 4), toByteOffset: 32 * group + l, as: UInt8.self)
                    }
                }
            }
        }
        }
        }
    }

    /// `dequantize_row_q4_K`.
    public static func dequantize(_ q: UnsafeRawBufferPointer, into y: UnsafeMutableBufferPointer<Float>) {
        precondition(y.count % blockSize == 0 && q.count >= y.count / blockSize * bytesPerBlock, "Q4_K: whole blocks only")
        for b in 0..<(y.count / blockSize) {
            let (d, dmin, packed, quants) = parts(q.baseAddress! + b * bytesPerBlock)
            var out = b * blockSize
            for group in 0..<4 {
                let (s1, m1) = scaleMin(2 * group, packed), (s2, m2) = scaleMin(2 * group + 1, packed)
                let d1 = d * Float(s1), min1 = dmin * Float(m1)
                let d2 = d * Float(s2), min2 = dmin * Float(m2)
                for l in 0..<32 { y[out + l] = d1 * Float(quants.load(fromByteOffset: 32 * group + l, as: UInt8.self) & 0xF) - min1 }
                for l in 0..<32 { y[out + 32 + l] = d2 * Float(quants.load(fromByteOffset: 32 * group + l, as: UInt8.self) >> 4) - min2 }
                out += 64
            }
        }
    }
}

extension Float {
    /// The value of an IEEE half-precision bit pattern (little-endian on disk).
    @inlinable @inline(__always)
    public init(halfBits: UInt16) { self = Float(Float16(bitPattern: UInt16(littleEndian: halfBits))) }
}
