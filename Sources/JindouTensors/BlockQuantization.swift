// GGUF / ggml block-quantised formats, bit-compatible with llama.cpp: ggml-common.h for
// the layouts, ggml-quants.c for the encoders and decoders (ggml 0.25.3, the llama.cpp
// vendored in the llama-cpp-python 0.3.36 sdist).
//
// Decoding mirrors ggml's `dequantize_row_*` operation by operation (the `gguf` Python
// package equals it bit for bit), producing f32. Encoding mirrors what
// `ggml_quantize_chunk` runs — `llama-quantize` without an importance matrix, or with one
// (`importance`) — with the same float operations in the same order, no fused
// multiply-add, the same rounding (`nearest_int`, `roundf`, `lroundf`, C's truncating
// float→int conversions, f32→f16 round-to-nearest-even), so it produces the same bytes.
// Both are tested against fixtures llama.cpp and the `gguf` package wrote
// (tools/fixture_quants.py → Tests/Fixtures/quants).
//
// | format  | ggml id | block | bytes | bits/weight | vec_dot activations | encoder |
// |---------|---------|-------|-------|-------------|---------------------|---------|
// | q4_0    |  2      |  32   |  18   | 4.5         | q8_0                | yes     |
// | q4_1    |  3      |  32   |  20   | 5.0         | q8_1                | yes     |
// | q5_0    |  6      |  32   |  22   | 5.5         | q8_0                | yes     |
// | q5_1    |  7      |  32   |  24   | 6.0         | q8_1                | yes     |
// | q8_0    |  8      |  32   |  34   | 8.5         | q8_0                | yes     |
// | q2_K    | 10      | 256   |  84   | 2.625       | q8_K                | yes     |
// | q3_K    | 11      | 256   | 110   | 3.4375      | q8_K                | yes     |
// | q4_K    | 12      | 256   | 144   | 4.5         | q8_K                | yes     |
// | q5_K    | 13      | 256   | 176   | 5.5         | q8_K                | yes     |
// | q6_K    | 14      | 256   | 210   | 6.5625      | q8_K                | yes     |
// | iq2_xxs | 16      | 256   |  66   | 2.0625      | q8_K                | no      |
// | iq2_xs  | 17      | 256   |  74   | 2.3125      | q8_K                | no      |
// | iq3_xxs | 18      | 256   |  98   | 3.0625      | q8_K                | no      |
// | iq1_s   | 19      | 256   |  50   | 1.5625      | q8_K                | no      |
// | iq4_nl  | 20      |  32   |  18   | 4.5         | q8_0                | yes     |
// | iq3_s   | 21      | 256   | 110   | 3.4375      | q8_K                | no      |
// | iq2_s   | 22      | 256   |  82   | 2.5625      | q8_K                | no      |
// | iq4_xs  | 23      | 256   | 136   | 4.25        | q8_K                | yes     |
// | iq1_m   | 29      | 256   |  56   | 1.75        | q8_K                | no      |
// | tq1_0   | 34      | 256   |  54   | 1.6875      | q8_K                | yes     |
// | tq2_0   | 35      | 256   |  66   | 2.0625      | q8_K                | yes     |
// | mxfp4   | 39      |  32   |  17   | 4.25        | q8_0                | yes     |
//
// "vec_dot activations" is `type_traits_cpu[type].vec_dot_type` in ggml-cpu.c: the block
// format ggml rounds the activations to before its integer dot product
// (`BlockFormat.activationFormat`). The IQ2/IQ3/IQ1 encoders (grid searches that need
// ggml's neighbour tables, and an importance matrix for IQ2_XXS/IQ2_XS/IQ1_S) are not
// ported: those formats are read, not written.
//
// One file per family: LegacyQuants.swift (Q4_0…Q8_0), KQuants.swift (Q2_K…Q6_K and
// ggml's scale searches), IQuants.swift (IQ*), MXFP4.swift, TernaryQuants.swift (TQ1_0,
// TQ2_0); GGMLTables.swift holds the grids, generated from ggml-common.h.

/// A ggml block format: how many weights a block holds, its size in bytes, and how to
/// decode (every format) and encode (`canQuantize`) it.
///
/// Case names are ggml's type names (`ggml_type_name`); raw values are those names in
/// lower case (`"q4_k"`), as the command-line flags spell them.
public enum BlockFormat: String, Sendable, CaseIterable, Codable {
    case q4_0
    case q4_1
    case q5_0
    case q5_1
    case q8_0
    case q2_K = "q2_k"
    case q3_K = "q3_k"
    case q4_K = "q4_k"
    case q5_K = "q5_k"
    case q6_K = "q6_k"
    case iq2_xxs
    case iq2_xs
    case iq3_xxs
    case iq1_s
    case iq4_nl
    case iq3_s
    case iq2_s
    case iq4_xs
    case iq1_m
    case tq1_0
    case tq2_0
    case mxfp4

    /// The format of a ggml type id (`enum ggml_type` in ggml.h), nil for types that are
    /// not block formats Jindou reads (F32, F16, BF16, Q8_1, Q8_K, integers, NVFP4, …).
    public init?(ggmlTypeID: UInt32) {
        guard let format = Self.allCases.first(where: { $0.ggmlTypeID == ggmlTypeID }) else { return nil }
        self = format
    }

    /// The type's value in ggml.h's `enum ggml_type` (the tensor type GGUF files store).
    public var ggmlTypeID: UInt32 {
        switch self {
        case .q4_0: 2
        case .q4_1: 3
        case .q5_0: 6
        case .q5_1: 7
        case .q8_0: 8
        case .q2_K: 10
        case .q3_K: 11
        case .q4_K: 12
        case .q5_K: 13
        case .q6_K: 14
        case .iq2_xxs: 16
        case .iq2_xs: 17
        case .iq3_xxs: 18
        case .iq1_s: 19
        case .iq4_nl: 20
        case .iq3_s: 21
        case .iq2_s: 22
        case .iq4_xs: 23
        case .iq1_m: 29
        case .tq1_0: 34
        case .tq2_0: 35
        case .mxfp4: 39
        }
    }

    /// Weights per block (ggml's `blck_size`).
    public var blockSize: Int {
        switch self {
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .iq4_nl, .mxfp4: 32
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq2_xxs, .iq2_xs, .iq3_xxs, .iq1_s, .iq3_s, .iq2_s, .iq4_xs, .iq1_m,
             .tq1_0, .tq2_0: 256
        }
    }

    /// Bytes per block (ggml's `type_size`, the block struct's `sizeof`).
    public var bytesPerBlock: Int {
        switch self {
        case .q4_0: Q4_0.bytesPerBlock
        case .q4_1: Q4_1.bytesPerBlock
        case .q5_0: Q5_0.bytesPerBlock
        case .q5_1: Q5_1.bytesPerBlock
        case .q8_0: Q8_0.bytesPerBlock
        case .q2_K: Q2_K.bytesPerBlock
        case .q3_K: Q3_K.bytesPerBlock
        case .q4_K: Q4_K.bytesPerBlock
        case .q5_K: Q5_K.bytesPerBlock
        case .q6_K: Q6_K.bytesPerBlock
        case .iq2_xxs: IQ2_XXS.bytesPerBlock
        case .iq2_xs: IQ2_XS.bytesPerBlock
        case .iq3_xxs: IQ3_XXS.bytesPerBlock
        case .iq1_s: IQ1_S.bytesPerBlock
        case .iq4_nl: IQ4_NL.bytesPerBlock
        case .iq3_s: IQ3_S.bytesPerBlock
        case .iq2_s: IQ2_S.bytesPerBlock
        case .iq4_xs: IQ4_XS.bytesPerBlock
        case .iq1_m: IQ1_M.bytesPerBlock
        case .tq1_0: TQ1_0.bytesPerBlock
        case .tq2_0: TQ2_0.bytesPerBlock
        case .mxfp4: MXFP4.bytesPerBlock
        }
    }

    /// Stored bits per weight, scales included (`8 · bytesPerBlock / blockSize`).
    public var bitsPerWeight: Double { Double(8 * bytesPerBlock) / Double(blockSize) }

    /// The block format ggml rounds the activations to for this type's integer dot product
    /// (`type_traits_cpu[type].vec_dot_type` in ggml-cpu.c).
    public var activationFormat: ActivationFormat {
        switch self {
        case .q4_0, .q5_0, .q8_0, .iq4_nl, .mxfp4: .q8_0
        case .q4_1, .q5_1: .q8_1
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq2_xxs, .iq2_xs, .iq3_xxs, .iq1_s, .iq3_s, .iq2_s, .iq4_xs, .iq1_m,
             .tq1_0, .tq2_0: .q8_K
        }
    }

    /// Whether `quantize` can encode this format. False for the IQ2/IQ3/IQ1 formats, whose
    /// ggml encoders (grid searches over neighbour tables) are not ported: Jindou reads them.
    public var canQuantize: Bool {
        switch self {
        case .iq2_xxs, .iq2_xs, .iq3_xxs, .iq1_s, .iq3_s, .iq2_s, .iq1_m: false
        default: true
        }
    }

    /// Bytes of a row of `columns` weights, or nil when `columns` is not a whole number of blocks.
    public func rowBytes(columns: Int) -> Int? {
        columns % blockSize == 0 ? columns / blockSize * bytesPerBlock : nil
    }

    /// Encodes `x` (a whole number of blocks) into `out` (`rowBytes(columns: x.count)` bytes),
    /// byte for byte as `ggml_quantize_chunk` does.
    ///
    /// `importance` is ggml's `quant_weights` (an importance matrix's entries for the
    /// row's columns, all positive). Without it the encoding is llama-quantize's without
    /// an imatrix; with it, `x` is one whole row (ggml derives per-row statistics) and
    /// `importance.count == x.count`. Q8_0, MXFP4, TQ1_0 and TQ2_0 ignore it, as ggml does.
    ///
    /// - Precondition: `canQuantize`; a format without an encoder stops here rather than
    ///   writing anything.
    public func quantize(_ x: UnsafeBufferPointer<Float>, into out: UnsafeMutableRawBufferPointer,
                         importance: UnsafeBufferPointer<Float>? = nil) {
        precondition(canQuantize, "\(rawValue): Jindou decodes this format but has no encoder for it")
        precondition(x.count % blockSize == 0 && out.count >= x.count / blockSize * bytesPerBlock,
                     "\(rawValue): whole blocks only (\(blockSize) weights each)")
        precondition(importance.map { $0.count == x.count } ?? true, "\(rawValue): importance needs one weight per column")
        guard let source = x.baseAddress, let target = out.baseAddress else { return }
        let w = importance?.baseAddress, blocks = x.count / blockSize
        switch self {
        case .q4_0: Q4_0.quantize(source, blocks, target, importance: w)
        case .q4_1: Q4_1.quantize(source, blocks, target, importance: w)
        case .q5_0: Q5_0.quantize(source, blocks, target, importance: w)
        case .q5_1: Q5_1.quantize(source, blocks, target, importance: w)
        case .q8_0: Q8_0.quantize(source, blocks, target)
        case .q2_K: Q2_K.quantize(source, blocks, target, importance: w)
        case .q3_K: Q3_K.quantize(source, blocks, target, importance: w)
        case .q4_K: Q4_K.quantize(source, blocks, target, importance: w)
        case .q5_K: Q5_K.quantize(source, blocks, target, importance: w)
        case .q6_K: Q6_K.quantize(source, blocks, target, importance: w)
        case .iq4_nl: IQ4_NL.quantize(source, blocks, target, importance: w)
        case .iq4_xs: IQ4_XS.quantize(source, blocks, target, importance: w)
        case .tq1_0: TQ1_0.quantize(source, blocks, target)
        case .tq2_0: TQ2_0.quantize(source, blocks, target)
        case .mxfp4: MXFP4.quantize(source, blocks, target)
        case .iq2_xxs, .iq2_xs, .iq3_xxs, .iq1_s, .iq3_s, .iq2_s, .iq1_m:
            preconditionFailure("unreachable: canQuantize is false for \(rawValue)")
        }
    }

    /// Decodes `q` into `y` (`y.count` weights, a whole number of blocks), bit for bit as
    /// ggml's `dequantize_row_*`.
    public func dequantize(_ q: UnsafeRawBufferPointer, into y: UnsafeMutableBufferPointer<Float>) {
        precondition(y.count % blockSize == 0 && q.count >= y.count / blockSize * bytesPerBlock,
                     "\(rawValue): whole blocks only (\(blockSize) weights each)")
        guard let out = y.baseAddress, let blocks = q.baseAddress else { return }
        let count = y.count / blockSize
        switch self {
        case .q4_0: Q4_0.dequantize(blocks, count, out)
        case .q4_1: Q4_1.dequantize(blocks, count, out)
        case .q5_0: Q5_0.dequantize(blocks, count, out)
        case .q5_1: Q5_1.dequantize(blocks, count, out)
        case .q8_0: Q8_0.dequantize(blocks, count, out)
        case .q2_K: Q2_K.dequantize(blocks, count, out)
        case .q3_K: Q3_K.dequantize(blocks, count, out)
        case .q4_K: Q4_K.dequantize(blocks, count, out)
        case .q5_K: Q5_K.dequantize(blocks, count, out)
        case .q6_K: Q6_K.dequantize(blocks, count, out)
        case .iq2_xxs: IQ2_XXS.dequantize(blocks, count, out)
        case .iq2_xs: IQ2_XS.dequantize(blocks, count, out)
        case .iq3_xxs: IQ3_XXS.dequantize(blocks, count, out)
        case .iq1_s: IQ1_S.dequantize(blocks, count, out)
        case .iq4_nl: IQ4_NL.dequantize(blocks, count, out)
        case .iq3_s: IQ3_S.dequantize(blocks, count, out)
        case .iq2_s: IQ2_S.dequantize(blocks, count, out)
        case .iq4_xs: IQ4_XS.dequantize(blocks, count, out)
        case .iq1_m: IQ1_M.dequantize(blocks, count, out)
        case .tq1_0: TQ1_0.dequantize(blocks, count, out)
        case .tq2_0: TQ2_0.dequantize(blocks, count, out)
        case .mxfp4: MXFP4.dequantize(blocks, count, out)
        }
    }
}

/// The block format ggml quantises activations to before a block format's integer dot
/// product (ggml-common.h): Q8_0 (f16 `d`, 32 × int8), Q8_1 (f16 `d`, f16 `s = d·Σq`,
/// 32 × int8; for the formats with a min) and Q8_K (f32 `d`, 256 × int8, 16 × int16
/// sums of 16; for the super-block formats).
public enum ActivationFormat: String, Sendable, CaseIterable, Codable {
    case q8_0
    case q8_1
    case q8_K = "q8_k"

    /// The type's value in ggml.h's `enum ggml_type`.
    public var ggmlTypeID: UInt32 {
        switch self {
        case .q8_0: 8
        case .q8_1: 9
        case .q8_K: 15
        }
    }

    /// Weights per block.
    public var blockSize: Int { self == .q8_K ? 256 : 32 }

    /// Bytes per block.
    public var bytesPerBlock: Int {
        switch self {
        case .q8_0: 34
        case .q8_1: 36
        case .q8_K: 4 + 256 + 32
        }
    }
}

extension Float {
    /// The value of an IEEE half-precision bit pattern (little-endian on disk).
    @inlinable @inline(__always)
    public init(halfBits: UInt16) { self = Float(Float16(bitPattern: UInt16(littleEndian: halfBits))) }
}

// MARK: - ggml's arithmetic, as the reference C code performs it

/// ggml's `nearest_int`: round to nearest, ties to even, by adding 1.5·2²³ and reading
/// the mantissa (valid for |value| ≤ 2²²; ggml asserts that).
@inline(__always)
func nearestInt(_ value: Float) -> Int32 {
    let shifted = value + 12_582_912
    return Int32(bitPattern: shifted.bitPattern & 0x007F_FFFF) - 0x0040_0000
}

/// C's float → int conversion as x86-64 performs it (`cvttss2si`): truncation toward zero,
/// and 0x8000_0000 for NaN and out-of-range values, where a Swift conversion would trap.
/// Conversions to `int8_t`/`uint8_t` take the low byte of this.
@inline(__always)
func truncatedInt(_ value: Float) -> Int32 {
    value > -2_147_483_904 && value < 2_147_483_648 ? Int32(value) : Int32.min
}

/// C's `roundf`/`lroundf`: to nearest, ties away from zero.
@inline(__always)
func roundedAway(_ value: Float) -> Int32 { truncatedInt(value.rounded(.toNearestOrAwayFromZero)) }

/// `GGML_FP32_TO_FP16`: round to nearest even, as little-endian bits.
@inline(__always)
func halfBits(_ value: Float) -> UInt16 { Float16(value).bitPattern.littleEndian }

/// Byte-level reads and writes of a block (formats are little-endian).
extension UnsafeRawPointer {
    @inline(__always) func byte(_ offset: Int) -> UInt8 { load(fromByteOffset: offset, as: UInt8.self) }
    @inline(__always) func u16(_ offset: Int) -> UInt16 { UInt16(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self)) }
    @inline(__always) func u32(_ offset: Int) -> UInt32 { UInt32(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
    /// The f16 at `offset`, widened (`GGML_FP16_TO_FP32`, exact).
    @inline(__always) func half(_ offset: Int) -> Float { Float(halfBits: loadUnaligned(fromByteOffset: offset, as: UInt16.self)) }
}

extension UnsafeMutableRawPointer {
    @inline(__always) func setByte(_ value: UInt8, _ offset: Int) { storeBytes(of: value, toByteOffset: offset, as: UInt8.self) }
    @inline(__always) func setU16(_ value: UInt16, _ offset: Int) { storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt16.self) }
    @inline(__always) func setU32(_ value: UInt32, _ offset: Int) { storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt32.self) }
    /// Stores `value` as f16 (`GGML_FP32_TO_FP16`) and returns it widened again.
    @discardableResult @inline(__always)
    func setHalf(_ value: Float, _ offset: Int) -> Float {
        let bits = halfBits(value)
        storeBytes(of: bits, toByteOffset: offset, as: UInt16.self)
        return Float(halfBits: bits)
    }
    @inline(__always) func orByte(_ value: UInt8, _ offset: Int) {
        storeBytes(of: load(fromByteOffset: offset, as: UInt8.self) | value, toByteOffset: offset, as: UInt8.self)
    }
}
