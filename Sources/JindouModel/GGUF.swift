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

/// A ggml tensor type (ggml.h `enum ggml_type`): its id, name and block layout, for every
/// type a GGUF file may hold — so any file's layout can be checked, and a tensor Jindou
/// cannot compute with is refused by name only when it is asked for.
public struct GGMLType: Hashable, Sendable, CustomStringConvertible {
    /// ggml's type id, as stored in the file.
    public let rawValue: UInt32
    /// ggml's name (`ggml_type_name`), e.g. "Q4_K".
    public let name: String
    /// Weights per block (1 for plain types).
    public let blockSize: Int
    /// Bytes per block.
    public let bytesPerBlock: Int

    /// Block layouts of every ggml type id (ggml.c `type_traits`: `blck_size`, `type_size`).
    /// Ids 4, 5 (Q4_2, Q4_3) and 31–33, 36–38 (removed repacked types) are not file types.
    static let traits: [UInt32: (name: String, blockSize: Int, bytesPerBlock: Int)] = [
        0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24),
        8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
        13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74),
        18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82),
        23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
        29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
        40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18), 42: ("Q2_0", 64, 18),
    ]

    /// The type with ggml id `rawValue`; nil for an id ggml does not define.
    public init?(rawValue: UInt32) {
        guard let t = Self.traits[rawValue] else { return nil }
        self.rawValue = rawValue
        name = t.name
        blockSize = t.blockSize
        bytesPerBlock = t.bytesPerBlock
    }

    /// The ggml type of a Jindou block format.
    public init(_ format: BlockFormat) {
        self = GGMLType(rawValue: format.ggmlTypeID)!
    }

    public static let f32 = GGMLType(rawValue: 0)!
    public static let f16 = GGMLType(rawValue: 1)!
    public static let bf16 = GGMLType(rawValue: 30)!
    public static let q8_0 = GGMLType(rawValue: 8)!
    public static let q4_K = GGMLType(rawValue: 12)!

    public var description: String { name }

    /// The block format Jindou computes this type in, or nil for plain types and types it
    /// does not read.
    public var blockFormat: BlockFormat? { BlockFormat(ggmlTypeID: rawValue) }

    /// The dtype a tensor of this type has in Jindou: the float dtype, `.uint8` (raw
    /// blocks) for a block format, or nil when Jindou does not compute with the type.
    public var dtype: DType? {
        switch rawValue {
        case 0: .float32
        case 1: .float16
        case 30: .bfloat16
        default: blockFormat == nil ? nil : .uint8
        }
    }

    /// Bytes of `elements` weights (a whole number of blocks), or nil.
    public func byteCount(elements: Int) -> Int? {
        elements % blockSize == 0 ? elements / blockSize * bytesPerBlock : nil
    }

    /// (weights per block, bytes per block).
    var block: (size: Int, bytes: Int) { (blockSize, bytesPerBlock) }

    /// Every type Jindou computes with, for messages.
    static var readable: String {
        traits.keys.sorted().compactMap { GGMLType(rawValue: $0) }.filter { $0.dtype != nil }.map(\.name).joined(separator: ", ")
    }
}

public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// Dimensions innermost first, as GGUF stores them (a [rows, columns] matrix is [columns, rows]).
    public let dimensions: [Int]
    public let type: GGMLType
    /// Offset from the start of its part's data section.
    public let offset: Int
    public let byteCount: Int
    /// Which file of a split model holds it (0 for an unsplit file).
    public let part: Int
    /// Offset of its first byte in that file.
    public let fileOffset: Int
}

/// A GGUF model, mapped read-only: one file, or every part of a model split by
/// `llama-gguf-split` (`NAME-00001-of-00003.gguf` …; opened by its first part).
///
/// Every tensor's type is checked for a known ggml layout and every tensor for lying inside
/// its file when the model is opened; whether Jindou computes with a type is checked only
/// for the tensors a model asks for (`GGUFCheckpoint`), so a file with one odd tensor
/// Jindou never reads still loads.
public final class GGUFFile: @unchecked Sendable {
    // @unchecked: immutable after init; the mappings are read-only.
    /// One file of the model.
    public struct Part: @unchecked Sendable {
        // @unchecked: the mappings are read-only and kept alive by `header`/`whole`.
        public let path: String
        public let byteCount: Int
        /// The beginning of the file, up to the tensor data: metadata and tensor infos are read
        /// from it. Only this is mapped when a model is opened, so a worker maps nothing of a
        /// part but its header and its experts' byte ranges (`GGUFCheckpoint.load`).
        let headerRegion: MappedRegion
        /// Where its tensor data starts.
        let dataOffset: Int
        /// The whole file, mapped the first time a tensor is read through `GGUFFile` itself.
        let whole: LazyMapping
        /// The bytes before `dataOffset`: metadata and tensor infos.
        var header: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: headerRegion.base, count: dataOffset) }
    }

    /// A whole-file mapping made on first use (thread-safe).
    final class LazyMapping: @unchecked Sendable {
        // @unchecked: `region` is only touched under `lock`.
        private let lock = NSLock()
        private var region: MappedRegion?
        let path: String
        let length: Int
        init(path: String, length: Int) {
            self.path = path
            self.length = length
        }
        func get() throws -> MappedRegion {
            try lock.withLock {
                if let region { return region }
                let mapped = try MappedRegion(path: path, offset: 0, length: length)
                region = mapped
                return mapped
            }
        }
    }

    /// The first (or only) file.
    public let path: String
    public let version: UInt32
    /// The first file's metadata (the model's; later parts carry only `split.*`).
    public let metadata: [String: GGUFValue]
    /// Keys in file order.
    public let metadataKeys: [String]
    /// Every part's tensors, in part order.
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    public let parts: [Part]
    private let index: [String: Int]

    public init(path: String) throws {
        let first = try Self.parse(path: path, part: 0)
        self.path = path
        version = first.version
        metadata = first.metadata
        metadataKeys = first.keys
        alignment = first.alignment
        var parts = [first.part]
        var tensors = first.tensors
        let count = try Self.splitField("split.count", first.metadata, path: path) ?? 1
        let number = try Self.splitField("split.no", first.metadata, path: path) ?? 0
        if count > 1 || number > 0 {
            guard number == 0 else {
                throw GGUFError(path: path, reason: "this is part \(number + 1) of \(count) of a split model; open its first part (…-00001-of-\(String(format: "%05d", count)).gguf)")
            }
            guard let prefix = Self.splitPrefix(path, count: count) else {
                throw GGUFError(path: path, reason: "split.count is \(count), but the file name does not end in -00001-of-\(String(format: "%05d", count)).gguf, so the other parts cannot be found")
            }
            for i in 1..<count {
                let partPath = prefix + String(format: "-%05d-of-%05d.gguf", i + 1, count)
                guard FileManager.default.fileExists(atPath: partPath) else {
                    throw GGUFError(path: path, reason: "split part \(i + 1) of \(count) is missing: \(partPath)")
                }
                let next = try Self.parse(path: partPath, part: i)
                let (partCount, partNumber) = (try Self.splitField("split.count", next.metadata, path: partPath),
                                               try Self.splitField("split.no", next.metadata, path: partPath))
                guard partCount == count, partNumber == i else {
                    throw GGUFError(path: partPath, reason: "split metadata says part \(partNumber.map { String($0 + 1) } ?? "?") of \(partCount.map(String.init) ?? "?"); expected part \(i + 1) of \(count) (files from different splits?)")
                }
                parts.append(next.part)
                tensors += next.tensors
            }
            if let declared = try Self.splitField("split.tensors.count", first.metadata, path: path), declared != tensors.count {
                throw GGUFError(path: path, reason: "split.tensors.count is \(declared), but the \(count) parts hold \(tensors.count) tensors")
            }
        }
        var index: [String: Int] = [:]
        for (i, tensor) in tensors.enumerated() {
            guard index[tensor.name] == nil else {
                throw GGUFError(path: parts[tensor.part].path, reason: "tensor '\(tensor.name)' appears twice (also in \(parts[tensors[index[tensor.name]!].part].path))")
            }
            index[tensor.name] = i
        }
        self.parts = parts
        self.tensors = tensors
        self.index = index
    }

    /// `NAME` of `NAME-00001-of-0000N.gguf` (llama.cpp's `llama_split_prefix`).
    static func splitPrefix(_ path: String, count: Int) -> String? {
        let suffix = String(format: "-%05d-of-%05d.gguf", 1, count)
        return path.hasSuffix(suffix) ? String(path.dropLast(suffix.count)) : nil
    }

    static func splitField(_ key: String, _ metadata: [String: GGUFValue], path: String) throws -> Int? {
        guard let value = metadata[key] else { return nil }
        guard let n = value.integer, n >= 0 else { throw GGUFError(path: path, reason: "metadata '\(key)' is not a non-negative integer") }
        return n
    }

    /// One file's header, tensor infos and mapping, checked.
    private static func parse(path: String, part: Int) throws -> (part: Part, version: UInt32, metadata: [String: GGUFValue], keys: [String],
                                                               alignment: Int, tensors: [GGUFTensorInfo]) {
        let size: Int
        do {
            // The target's size: `attributesOfItem` describes a symbolic link itself.
            let target = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
            size = (try FileManager.default.attributesOfItem(atPath: target)[.size] as? NSNumber)?.intValue ?? 0
        } catch {
            throw GGUFError(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
        guard size >= 24 else { throw GGUFError(path: path, reason: "\(size) bytes is too short for a GGUF header") }
        // Map a window of the file's beginning, larger until the header fits (a vocabulary of
        // 150k tokens and merges is a few MB of metadata).
        var window = min(size, 8 << 20)
        while true {
            do {
                return try parseHeader(path: path, part: part, size: size, window: window)
            } catch Reader.WindowTooSmall.needed(let bytes) {
                window = min(size, max(bytes, window * 4))
            }
        }
    }

    private static func parseHeader(path: String, part: Int, size: Int, window: Int) throws
        -> (part: Part, version: UInt32, metadata: [String: GGUFValue], keys: [String], alignment: Int, tensors: [GGUFTensorInfo]) {
        let region = try MappedRegion(path: path, offset: 0, length: window)
        var reader = Reader(base: region.base, count: window, fileSize: size, path: path)
        guard try reader.bytes(4) == Array("GGUF".utf8) else { throw GGUFError(path: path, reason: "not a GGUF file (magic is not 'GGUF')") }
        let version = try reader.u32()
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
        let alignment = metadata["general.alignment"]?.integer ?? 32
        guard alignment > 0 && alignment & (alignment - 1) == 0 else {
            throw GGUFError(path: path, reason: "general.alignment \(alignment) is not a power of two")
        }
        var infos: [(name: String, dimensions: [Int], type: GGMLType, offset: Int, bytes: Int)] = []
        for _ in 0..<tensorCount {
            let name = try reader.string()
            let rank = Int(try reader.u32())
            guard (1...4).contains(rank) else { throw GGUFError(path: path, reason: "tensor '\(name)' has \(rank) dimensions (1…4)") }
            var dimensions: [Int] = []
            for _ in 0..<rank { dimensions.append(try reader.count("tensor '\(name)' dimension")) }
            let rawType = try reader.u32()
            guard let type = GGMLType(rawValue: rawType) else {
                throw GGUFError(path: path, reason: "tensor '\(name)' has ggml type id \(rawType), which is not a ggml type this version knows (newer llama.cpp?)")
            }
            let offset = try reader.count("tensor '\(name)' offset")
            let (elements, overflow) = dimensions.reduce((1, false)) { acc, d in
                let (v, o) = acc.0.multipliedReportingOverflow(by: d)
                return (v, acc.1 || o)
            }
            guard !overflow, dimensions[0] % type.blockSize == 0 else {
                throw GGUFError(path: path, reason: "tensor '\(name)' \(dimensions): rows must be whole \(type) blocks of \(type.blockSize)")
            }
            guard offset % alignment == 0 else { throw GGUFError(path: path, reason: "tensor '\(name)' offset \(offset) is not \(alignment)-aligned") }
            infos.append((name, dimensions, type, offset, elements / type.blockSize * type.bytesPerBlock))
        }
        let dataOffset = (reader.offset + alignment - 1) / alignment * alignment
        for info in infos {
            guard dataOffset + info.offset + info.bytes <= size else {
                throw GGUFError(path: path, reason: "tensor '\(info.name)' ends at byte \(dataOffset + info.offset + info.bytes), past the end of the file (\(size)): truncated?")
            }
        }
        let tensors = infos.map {
            GGUFTensorInfo(name: $0.name, dimensions: $0.dimensions, type: $0.type, offset: $0.offset, byteCount: $0.bytes, part: part,
                           fileOffset: dataOffset + $0.offset)
        }
        // Keep only the header mapped (the window may reach into tensor data).
        let header = window > dataOffset ? try MappedRegion(path: path, offset: 0, length: max(1, min(size, dataOffset))) : region
        return (Part(path: path, byteCount: size, headerRegion: header, dataOffset: dataOffset,
                     whole: LazyMapping(path: path, length: size)), version, metadata, keys, alignment, tensors)
    }

    public func tensor(_ name: String) -> GGUFTensorInfo? { index[name].map { tensors[$0] } }

    /// The tensor's bytes, in place (maps the whole part on first use; `GGUFCheckpoint.load`
    /// maps only the ranges it is asked for instead).
    public func bytes(of info: GGUFTensorInfo) throws -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: try parts[info.part].whole.get().base + info.fileOffset, count: info.byteCount)
    }

    /// The path of the file holding `info`.
    public func path(of info: GGUFTensorInfo) -> String { parts[info.part].path }

    /// `info`'s dtype in Jindou, or an error naming the tensor, its type and file when Jindou
    /// does not compute with that type.
    public func dtype(of info: GGUFTensorInfo) throws -> DType {
        guard let dtype = info.type.dtype else {
            throw GGUFError(path: path(of: info), reason: "tensor '\(info.name)' has type \(info.type), which Jindou does not compute with (it reads \(GGMLType.readable))")
        }
        return dtype
    }

    /// A 2-D tensor, or one slice `index` of the outermost dimension of a 3-D one (a stacked
    /// expert), as a matrix: rows = the second dimension, columns = the innermost.
    public func matrix(_ name: String, slice index: Int? = nil) throws -> WeightMatrix {
        guard let info = tensor(name) else { throw GGUFError(path: path, reason: "no tensor '\(name)'") }
        let d = info.dimensions
        guard (index == nil && d.count == 2) || (index != nil && d.count == 3) else {
            throw GGUFError(path: path(of: info), reason: "tensor '\(name)' has dimensions \(d); expected \(index == nil ? 2 : 3)")
        }
        let (columns, rows) = (d[0], d[1])
        let rowBytes = columns / info.type.blockSize * info.type.bytesPerBlock
        var base = try bytes(of: info).baseAddress!
        if let index {
            guard (0..<d[2]).contains(index) else { throw GGUFError(path: path(of: info), reason: "tensor '\(name)' has \(d[2]) slices, asked for \(index)") }
            base += index * rows * rowBytes
        }
        let owner = try parts[info.part].whole.get()
        if let format = info.type.blockFormat {
            return WeightMatrix(rows: rows, columns: columns, quantized: format, base: base, owner: owner)
        }
        return WeightMatrix(rows: rows, columns: columns, dtype: try dtype(of: info), base: base, owner: owner)
    }

    /// Bounds-checked little-endian reads from the mapping.
    struct Reader {
        let base: UnsafeRawPointer
        /// Bytes mapped at `base` (a window of the file's beginning).
        let count: Int
        let fileSize: Int
        let path: String
        var offset = 0

        /// The header runs past the mapped window: map at least this many bytes and read again.
        enum WindowTooSmall: Error { case needed(Int) }

        mutating func need(_ n: Int, _ what: @autoclosure () -> String) throws {
            guard n >= 0, offset + n <= fileSize else {
                throw GGUFError(path: path, reason: "truncated: \(what()) at byte \(offset) needs \(n) bytes, the file has \(fileSize)")
            }
            if offset + n > count { throw WindowTooSmall.needed(offset + n) }
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
