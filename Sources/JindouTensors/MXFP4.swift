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

extension MXFP4 {
    /// Rows `rows` of a matrix stored as Hugging Face keeps MXFP4 (gpt-oss's `*_blocks`
    /// [rows, columns/32, 16] and `*_scales` [rows, columns/32], U8), in ggml's block layout:
    /// per block the E8M0 byte, then 16 bytes with weight j in the low and weight j + 16 in
    /// the high nibble. Hugging Face packs weight 2i in the low and 2i + 1 in the high nibble
    /// of byte i (`convert_moe_packed_tensors`); the exponents are the same bytes (the table
    /// here holds doubled values and the scale is halved, so both decode to
    /// e2m1 · 2^(e − 127)). Only bits move: the result decodes to exactly what transformers'
    /// dequantisation gives.
    public static func repackedRows(blocks: UnsafeRawPointer, scales: UnsafeRawPointer, rows: some Collection<Int>, columns: Int)
        -> OwnedBytes {
        let perRow = columns / blockSize
        let storage = OwnedBytes(byteCount: rows.count * perRow * bytesPerBlock)
        let source = blocks.assumingMemoryBound(to: UInt8.self), exponents = scales.assumingMemoryBound(to: UInt8.self)
        var target = storage.pointer.assumingMemoryBound(to: UInt8.self)
        var values = [UInt8](repeating: 0, count: blockSize)
        for r in rows {
            for b in 0..<perRow {
                let packed = source + (r * perRow + b) * 16
                for i in 0..<16 {
                    values[2 * i] = packed[i] & 0x0F
                    values[2 * i + 1] = packed[i] >> 4
                }
                target[0] = exponents[r * perRow + b]
                for j in 0..<16 { target[1 + j] = values[j] | (values[j + 16] << 4) }
                target += bytesPerBlock
            }
        }
        return storage
    }
}
