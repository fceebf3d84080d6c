import Foundation
import JindouNumerics

// GGUF files (llama.cpp's format, version 2 and 3; ggml/docs/gguf.md):
//   "GGUF" u32 version, u64 tensor count, u64 metadata count,
//   metadata: key (u64 length + UTF-8), u32 value type, value (arrays: u32 element type,
//             u64 count, elements),
//   tensor infos: name, u32 dimensions, u64 × dims (innermost first), u32 ggml type,
//             u64 offset from the data section,
//   padding to `general.alignment` (default 32), then the data section.
// The whole file is mapped read-only; tensors are read in place, quantised ones as
// block-quantised `WeightMatrix`es.

/// Why a GGUF file cannot be read, naming the file and the place.
public struct GGUFError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
}

/// A metadata value.
public indirect enum GGUFValue: Sendable, Equatable {
    case uint(UInt64)
    case int(Int64)
    case float(Double)
    case bool(Bool)
    case string(String)
    case array([GGUFValue])

    public var integer: Int? {
        switch self {
        case .uint(let v): Int(exactly: v)
        case .int(let v): Int(exactly: v)
        default: nil
        }
    }
    public var double: Double? {
        switch self {
        case .float(let v): v
        case .uint(let v): Double(v)
        case .int(let v): Double(v)
        default: nil
        }
    }
    public var string: String? { if case .string(let s) = self { s } else { nil } }
    public var array: [GGUFValue]? { if case .array(let a) = self { a } else { nil } }
}

/// ggml tensor types Jindou reads.
public enum GGMLType: UInt32, Sendable {
    case f32 = 0
    case f16 = 1
    case q8_0 = 8
    case q4_K = 12
    case bf16 = 30

    public init(_ format: BlockFormat) {
        switch format {
        case .q8_0: self = .q8_0
        case .q4_K: self = .q4_K
        default: preconditionFailure("GGUF export writes Q8_0 and Q4_K tensors only, not \(format.rawValue)")
        }
    }

    /// Names of the ggml types Jindou does not read (ggml.h `ggml_type`), for messages.
    static let otherNames: [UInt32: String] = [
        2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
        16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS",
        24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
    ]

    /// The block format of a quantised type.
    public var blockFormat: BlockFormat? {
        switch self {
        case .q8_0: .q8_0
        case .q4_K: .q4_K
        case .f32, .f16, .bf16: nil
        }
    }

    /// (weights per block, bytes per block).
    var block: (size: Int, bytes: Int) {
        if let blockFormat { return (blockFormat.blockSize, blockFormat.bytesPerBlock) }
        return (1, self == .f32 ? 4 : 2)
    }
}

public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// Dimensions innermost first, as GGUF stores them (a [rows, columns] matrix is [columns, rows]).
    public let dimensions: [Int]
    public let type: GGMLType
    /// Offset from the start of the data section.
    public let offset: Int
    public let byteCount: Int
}

/// A GGUF file, mapped read-only.
public final class GGUFFile: @unchecked Sendable {
    // @unchecked: immutable after init; the mapping is read-only.
    public let path: String
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    /// Keys in file order.
    public let metadataKeys: [String]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    let region: MappedRegion
    let dataOffset: Int

    public init(path: String) throws {
        self.path = path
        let size: Int
        do {
            // The target's size: `attributesOfItem` describes a symbolic link itself.
            let target = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
            size = (try FileManager.default.attributesOfItem(atPath: target)[.size] as? NSNumber)?.intValue ?? 0
        } catch {
            throw GGUFError(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
        guard size >= 24 else { throw GGUFError(path: path, reason: "\(size) bytes is too short for a GGUF header") }
        region = try MappedRegion(path: path, offset: 0, length: size)
        var reader = Reader(base: region.base, count: size, path: path)
        guard try reader.bytes(4) == Array("GGUF".utf8) else { throw GGUFError(path: path, reason: "not a GGUF file (magic is not 'GGUF')") }
        version = try reader.u32()
        guard version == 2 || version == 3 else { throw GGUFError(path: path, reason: "GGUF version \(version) is not supported (2 or 3)") }
        let tensorCount = try reader.count("tensor count")
        let metadataCount = try reader.count("metadata count")
        var metadata: [String: GGUFValue] = [:]
        var keys: [String] = []
        for _ in 0..<metadataCount {
            let key = try reader.string()
            let type = try reader.u32()
            guard metadata[key] == nil else { throw GGUFError(path: path, reason: "metadata key '\(key)' appears twice") }
            metadata[key] = try reader.value(type: type, key: key, depth: 0)
            keys.append(key)
        }
        self.metadata = metadata
        metadataKeys = keys
        alignment = metadata["general.alignment"]?.integer ?? 32
        guard alignment > 0 && alignment & (alignment - 1) == 0 else {
            throw GGUFError(path: path, reason: "general.alignment \(alignment) is not a power of two")
        }
        var infos: [GGUFTensorInfo] = []
        for _ in 0..<tensorCount {
            let name = try reader.string()
            let rank = Int(try reader.u32())
            guard (1...4).contains(rank) else { throw GGUFError(path: path, reason: "tensor '\(name)' has \(rank) dimensions (1…4)") }
            var dimensions: [Int] = []
            for _ in 0..<rank { dimensions.append(try reader.count("tensor '\(name)' dimension")) }
            let rawType = try reader.u32()
            guard let type = GGMLType(rawValue: rawType) else {
                let known = GGMLType.otherNames[rawType].map { " (\($0))" } ?? ""
                throw GGUFError(path: path, reason: "tensor '\(name)' has ggml type \(rawType)\(known), which Jindou does not read (F32, F16, BF16, Q8_0, Q4_K)")
            }
            let offset = try reader.count("tensor '\(name)' offset")
            let (elements, overflow) = dimensions.reduce((1, false)) { acc, d in
                let (v, o) = acc.0.multipliedReportingOverflow(by: d)
                return (v, acc.1 || o)
            }
            guard !overflow, dimensions[0] % type.block.size == 0 else {
                throw GGUFError(path: path, reason: "tensor '\(name)' \(dimensions): rows must be whole \(type) blocks of \(type.block.size)")
            }
            guard offset % alignment == 0 else { throw GGUFError(path: path, reason: "tensor '\(name)' offset \(offset) is not \(alignment)-aligned") }
            infos.append(GGUFTensorInfo(name: name, dimensions: dimensions, type: type, offset: offset,
                                        byteCount: elements / type.block.size * type.block.bytes))
        }
        dataOffset = (reader.offset + alignment - 1) / alignment * alignment
        for info in infos {
            guard dataOffset + info.offset + info.byteCount <= size else {
                throw GGUFError(path: path, reason: "tensor '\(info.name)' ends at byte \(dataOffset + info.offset + info.byteCount), past the end of the file (\(size)): truncated?")
            }
        }
        tensors = infos
    }

    public func tensor(_ name: String) -> GGUFTensorInfo? { tensors.first { $0.name == name } }

    /// The tensor's bytes, in place.
    public func bytes(of info: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: region.base + dataOffset + info.offset, count: info.byteCount)
    }

    /// A 2-D tensor, or one slice `index` of the outermost dimension of a 3-D one (a stacked
    /// expert), as a matrix: rows = the second dimension, columns = the innermost.
    public func matrix(_ name: String, slice index: Int? = nil) throws -> WeightMatrix {
        guard let info = tensor(name) else { throw GGUFError(path: path, reason: "no tensor '\(name)'") }
        let d = info.dimensions
        guard (index == nil && d.count == 2) || (index != nil && d.count == 3) else {
            throw GGUFError(path: path, reason: "tensor '\(name)' has dimensions \(d); expected \(index == nil ? 2 : 3)")
        }
        let (columns, rows) = (d[0], d[1])
        let rowBytes = columns / info.type.block.size * info.type.block.bytes
        var base = bytes(of: info).baseAddress!
        if let index {
            guard (0..<d[2]).contains(index) else { throw GGUFError(path: path, reason: "tensor '\(name)' has \(d[2]) slices, asked for \(index)") }
            base += index * rows * rowBytes
        }
        switch info.type {
        case .f32: return WeightMatrix(rows: rows, columns: columns, dtype: .float32, base: base, owner: region)
        case .f16: return WeightMatrix(rows: rows, columns: columns, dtype: .float16, base: base, owner: region)
        case .bf16: return WeightMatrix(rows: rows, columns: columns, dtype: .bfloat16, base: base, owner: region)
        case .q8_0, .q4_K: return WeightMatrix(rows: rows, columns: columns, quantized: info.type.blockFormat!, base: base, owner: region)
        }
    }

    /// Bounds-checked little-endian reads from the mapping.
    struct Reader {
        let base: UnsafeRawPointer
        let count: Int
        let path: String
        var offset = 0

        mutating func need(_ n: Int, _ what: @autoclosure () -> String) throws {
            guard n >= 0, offset + n <= count else {
                throw GGUFError(path: path, reason: "truncated: \(what()) at byte \(offset) needs \(n) bytes, the file has \(count)")
            }
        }
        mutating func bytes(_ n: Int) throws -> [UInt8] {
            try need(n, "\(n) bytes")
            defer { offset += n }
            return Array(UnsafeRawBufferPointer(start: base + offset, count: n))
        }
        mutating func load<T: FixedWidthInteger>(_: T.Type) throws -> T {
            try need(MemoryLayout<T>.size, "\(T.self)")
            defer { offset += MemoryLayout<T>.size }
            return T(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        mutating func u32() throws -> UInt32 { try load(UInt32.self) }
        /// A u64 count or size that must fit the file.
        mutating func count(_ what: String) throws -> Int {
            let v = try load(UInt64.self)
            guard v <= UInt64(Int32.max) * 4096 else { throw GGUFError(path: path, reason: "\(what) \(v) is implausibly large") }
            return Int(v)
        }
        mutating func string() throws -> String {
            let n = try count("string length")
            try need(n, "a string of \(n) bytes")
            defer { offset += n }
            guard let s = String(validating: UnsafeRawBufferPointer(start: base + offset, count: n), as: UTF8.self) else {
                throw GGUFError(path: path, reason: "string at byte \(offset) is not UTF-8")
            }
            return s
        }
        mutating func value(type: UInt32, key: String, depth: Int) throws -> GGUFValue {
            switch type {
            case 0: return .uint(UInt64(try load(UInt8.self)))
            case 1: return .int(Int64(try load(Int8.self)))
            case 2: return .uint(UInt64(try load(UInt16.self)))
            case 3: return .int(Int64(try load(Int16.self)))
            case 4: return .uint(UInt64(try load(UInt32.self)))
            case 5: return .int(Int64(try load(Int32.self)))
            case 6: return .float(Double(Float(bitPattern: try load(UInt32.self))))
            case 7:
                let b = try load(UInt8.self)
                guard b <= 1 else { throw GGUFError(path: path, reason: "'\(key)': bool byte \(b)") }
                return .bool(b == 1)
            case 8: return .string(try string())
            case 9:
                guard depth == 0 else { throw GGUFError(path: path, reason: "'\(key)': nested arrays are not supported") }
                let elementType = try u32()
                let n = try count("'\(key)' array length")
                var values: [GGUFValue] = []
                values.reserveCapacity(min(n, 1 << 20))
                for _ in 0..<n { values.append(try value(type: elementType, key: key, depth: depth + 1)) }
                return .array(values)
            case 10: return .uint(try load(UInt64.self))
            case 11: return .int(try load(Int64.self))
            case 12: return .float(Double(bitPattern: try load(UInt64.self)))
            default: throw GGUFError(path: path, reason: "'\(key)' has value type \(type), not a GGUF type (0…12)")
            }
        }
    }
}
