#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MXFP4 (OCP microscaling FP4, gpt-oss's expert format in GGUF): blocks of 32 E2M1
// values sharing an E8M0 exponent. Mirrors ggml-quants.c's `quantize_row_mxfp4_ref`
// (what `quantize_mxfp4` runs) and `dequantize_row_mxfp4`.

/// MXFP4: `block_mxfp4`, 17 bytes: the E8M0 exponent `e` at 0, 16 bytes of 4-bit
/// `kvalues_mxfp4` indices at 1 (byte j: weight j low, weight j + 16 high). The table holds
/// the E2M1 values doubled, so weight = kvalue · 2^(e − 128) (`GGML_E8M0_TO_FP32_HALF`).
public enum MXFP4 {
    @inlinable public static var blockSize: Int { 32 }
    @inlinable public static var bytesPerBlock: Int { 17 }

    /// `ggml_e8m0_to_fp32_half`: 2^(e − 128) as ggml builds it (subnormal for e < 2).
    @inlinable @inline(__always)
    public static func halfScale(_ e: UInt8) -> Float {
        Float(bitPattern: e < 2 ? UInt32(0x0020_0000) << UInt32(e) : UInt32(e - 1) << 23)
    }

    /// `best_index_mxfp4`: the first index whose value · `e` is nearest `x`.
    @inline(__always)
    static func bestIndex(_ x: Float, _ e: Float, _ values: UnsafePointer<Int8>) -> UInt8 {
        var best = 0
        var bestError = abs(Float(values[0]) * e - x)
        for i in 1..<16 {
            let error = abs(Float(values[i]) * e - x)
            if error < bestError {
                best = i
                bestError = error
            }
        }
        return UInt8(best)
    }

    /// `quantize_row_mxfp4_ref`.
    static func quantize(_ x: UnsafePointer<Float>, _ blocks: Int, _ out: UnsafeMutableRawPointer) {
        let values = GGMLTables.kvaluesMXFP4.base
        for i in 0..<blocks {
            let xb = x + 32 * i, y = out + bytesPerBlock * i
            var amax: Float = 0
            for j in 0..<32 where amax < abs(xb[j]) { amax = abs(xb[j]) }
            let e = amax > 0 ? UInt8(truncatingIfNeeded: truncatedInt(floorf(log2f(amax)) - 2 + 127)) : 0
            let d = halfScale(e)
            y.setByte(e, 0)
            for j in 0..<16 {
                y.setByte(bestIndex(xb[j], d, values) | (bestIndex(xb[16 + j], d, values) << 4), 1 + j)
            }
        }
    }

    /// `dequantize_row_mxfp4`.
    static func dequantize(_ blocks: UnsafeRawPointer, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        let values = GGMLTables.kvaluesMXFP4.base
        for i in 0..<count {
            let b = blocks + bytesPerBlock * i, out = y + 32 * i
            let d = halfScale(b.byte(0))
            for j in 0..<16 {
                let q = b.byte(1 + j)
                out[j] = Float(values[Int(q & 0x0F)]) * d
                out[j + 16] = Float(values[Int(q >> 4)]) * d
            }
        }
    }
}
