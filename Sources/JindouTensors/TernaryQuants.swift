// Ternary formats (BitNet b1.58, TriLMs): weights in {−1, 0, 1} times a per-256 f16 scale.
// Mirrors ggml-quants.c's `quantize_row_tq1_0_ref`, `quantize_row_tq2_0_ref` (what
// `quantize_tq*_0` run) and `dequantize_row_tq*_0`.

/// TQ1_0: `block_tq1_0`, 54 bytes: 48 bytes `qs` at 0 holding 5 trits each (240 weights:
/// first 32 bytes × 5 for weights 0–159, then 16 bytes × 5 for 160–239), 4 bytes `qh` at 48
/// holding 4 trits each (weights 240–255), f16 `d` at 52. A byte stores its trits as the
/// base-3 fraction ⌈t·256/243⌉, so trit n is `((byte · 3ⁿ mod 256) · 3) >> 8`.
/// Weight = d · (trit − 1).
public enum TQ1_0 {
    @inlinable public static var blockSize: Int { 256 }
    @inlinable public static var bytesPerBlock: Int { 54 }
    @inlinable public static var highOffset: Int { 48 }
    @inlinable public static var dOffset: Int { 52 }

    /// `quantize_row_tq1_0_ref`.
    static func quantize(_ x: UnsafePointer<Float>, _ blocks: Int, _ out: UnsafeMutableRawPointer) {
        var x = x
        for i in 0..<blocks {
            let y = out + bytesPerBlock * i
            var amax: Float = 0
            for j in 0..<256 { amax = max(amax, abs(x[j])) }
            let d = amax
            let id: Float = d != 0 ? 1 / d : 0
            y.setHalf(d, dOffset)
            @inline(__always) func trit(_ v: Float) -> UInt8 { UInt8(truncatingIfNeeded: roundedAway(v * id) + 1) }
            @inline(__always) func packed(_ q: UInt8) -> UInt8 { UInt8(truncatingIfNeeded: (UInt16(q) * 256 + 242) / 243) }
            // 5 elements per byte, along 32 bytes, then along 16.
            @inline(__always) func fiveTrits(_ start: Int, _ width: Int) {
                for m in 0..<width {
                    var q: UInt8 = 0
                    for n in 0..<5 { q = q &* 3 &+ trit(x[m + n * width]) }
                    y.setByte(packed(q), start + m)
                }
                x += 5 * width
            }
            fiveTrits(0, 32)
            fiveTrits(32, 16)
            // 4 elements per byte, the first in the most significant trit.
            for j in 0..<4 {
                var q: UInt8 = 0
                for m in 0..<4 { q = q &* 3 &+ trit(x[j + m * 4]) }
                y.setByte(packed(q &* 3), highOffset + j)
            }
            x += 16
        }
    }

    /// `dequantize_row_tq1_0`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        var y = y
        let pow3: SIMD8<UInt8> = [1, 3, 9, 27, 81, 243, 0, 0]
        @inline(__always) func value(_ byte: UInt8, _ n: Int, _ d: Float) -> Float {
            let q = byte &* pow3[n]
            let xi = Int16((UInt16(q) * 3) >> 8)
            return Float(xi - 1) * d
        }
        for i in 0..<count {
            let b = blocks + bytesPerBlock * i
            let d = b.half(dOffset)
            for n in 0..<5 {
                for m in 0..<32 { y[m] = value(b.byte(m), n, d) }
                y += 32
            }
            for n in 0..<5 {
                for m in 0..<16 { y[m] = value(b.byte(32 + m), n, d) }
                y += 16
            }
            for n in 0..<4 {
                for j in 0..<4 { y[j] = value(b.byte(highOffset + j), n, d) }
                y += 4
            }
        }
    }
}

/// TQ2_0: `block_tq2_0`, 66 bytes: 64 bytes `qs` at 0 (for each 128 weights, 32 bytes:
/// bits 2n of byte m hold weight 32·n + m's trit + 1), f16 `d` at 64. Weight = d · (q − 1).
public enum TQ2_0 {
    @inlinable public static var blockSize: Int { 256 }
    @inlinable public static var bytesPerBlock: Int { 66 }
    @inlinable public static var dOffset: Int { 64 }

    /// `quantize_row_tq2_0_ref`.
    static func quantize(_ x: UnsafePointer<Float>, _ blocks: Int, _ out: UnsafeMutableRawPointer) {
        var x = x
        for i in 0..<blocks {
            let y = out + bytesPerBlock * i
            var amax: Float = 0
            for j in 0..<256 { amax = max(amax, abs(x[j])) }
            let d = amax
            let id: Float = d != 0 ? 1 / d : 0
            y.setHalf(d, dOffset)
            for j in stride(from: 0, to: 64, by: 32) {
                for m in 0..<32 {
                    var q: UInt8 = 0
                    for n in 0..<4 {
                        let xi = roundedAway(x[m + n * 32] * id) + 1
                        q = q &+ (UInt8(truncatingIfNeeded: xi & 3) << UInt8(2 * n))
                    }
                    y.setByte(q, j + m)
                }
                x += 128
            }
        }
    }

    /// `dequantize_row_tq2_0`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        var y = y
        for i in 0..<count {
            let b = blocks + bytesPerBlock * i
            let d = b.half(dOffset)
            for j in stride(from: 0, to: 64, by: 32) {
                for l in 0..<4 {
                    for m in 0..<32 {
                        let q = Int8(bitPattern: (b.byte(j + m) >> UInt8(l * 2)) & 3)
                        y[m] = Float(q - 1) * d
                    }
                    y += 32
                }
            }
        }
    }
}
