import Foundation
import JindouNumerics

/// One tensor's entry in a safetensors header.
public struct SafetensorsEntry: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Byte range relative to the start of the data section.
    public let dataRange: Range<Int>

    public var elementCount: Int { shape.reduce(1, *) }
}

/// The parsed header of one `.safetensors` file: validated, so every entry's range lies
/// inside the file and matches its shape and dtype.
///
/// Layout (https://github.com/huggingface/safetensors): 8-byte little-endian header
/// length N, N bytes of JSON `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {…}}`,
/// then the data section.
public struct SafetensorsHeader: Sendable {
    public let path: String
    public let entries: [String: SafetensorsEntry]
    public let metadata: [String: String]
    /// File offset of the data section (8 + N).
    public let dataOffset: Int
    public let fileSize: Int

    /// Headers larger than this are rejected before reading (safetensors' own limit).
    public static let maximumHeaderLength: UInt64 = 100_000_000

    /// Reads and validates the header of the file at `path`.
    public init(contentsOf path: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            if FileManager.default.fileExists(atPath: path) {
                throw CheckpointError.unreadableFile(path: path, reason: "permission denied or not a regular file")
            }
            throw CheckpointError.missingFile(path: path)
        }
        defer { try? handle.close() }
        let fileSize: Int
        do {
            fileSize = Int(try handle.seekToEnd())
            try handle.seek(toOffset: 0)
        } catch {
            throw CheckpointError.unreadableFile(path: path, reason: "\(error)")
        }
        guard fileSize >= 8 else {
            throw CheckpointError.truncatedFile(path: path, expectedBytes: 8, actualBytes: fileSize)
        }
        let prefix = (try? handle.read(upToCount: 8)) ?? Data()
        guard prefix.count == 8 else {
            throw CheckpointError.unreadableFile(path: path, reason: "could not read the 8-byte header length")
        }
        let headerLength = prefix.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self).littleEndian }
        guard headerLength <= UInt64(fileSize - 8), headerLength <= Self.maximumHeaderLength else {
            throw CheckpointError.headerLengthBeyondFile(path: path, headerLength: headerLength, fileSize: fileSize)
        }
        let json = (try? handle.read(upToCount: Int(headerLength))) ?? Data()
        guard json.count == Int(headerLength) else {
            throw CheckpointError.truncatedFile(path: path, expectedBytes: 8 + Int(headerLength), actualBytes: fileSize)
        }
        try self.init(path: path, headerJSON: json, dataOffset: 8 + Int(headerLength), fileSize: fileSize)
    }

    /// Parses and validates header JSON (pure; tests feed it bytes directly).
    public init(path: String, headerJSON: Data, dataOffset: Int, fileSize: Int) throws {
        self.path = path
        self.dataOffset = dataOffset
        self.fileSize = fileSize
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: headerJSON)
        } catch {
            throw CheckpointError.badHeader(path: path, reason: "header is not valid JSON (\(headerJSON.count) bytes)")
        }
        guard let dictionary = object as? [String: Any] else {
            throw CheckpointError.badHeader(path: path, reason: "header JSON is not an object")
        }
        var metadata: [String: String] = [:]
        var entries: [String: SafetensorsEntry] = [:]
        for (name, value) in dictionary {
            if name == "__metadata__" {
                guard let meta = value as? [String: Any] else {
                    throw CheckpointError.badHeader(path: path, reason: "__metadata__ is not an object")
                }
                for (k, v) in meta { metadata[k] = (v as? String) ?? "\(v)" }
                continue
            }
            guard let fields = value as? [String: Any] else {
                throw CheckpointError.badHeader(path: path, reason: "entry '\(name)' is not an object")
            }
            guard let dtypeName = fields["dtype"] as? String else {
                throw CheckpointError.badHeader(path: path, reason: "entry '\(name)' has no dtype")
            }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw CheckpointError.unknownDType(path: path, tensor: name, dtype: dtypeName)
            }
            guard let shapeValues = fields["shape"] as? [Any],
                  let shape = Self.integers(shapeValues), shape.allSatisfy({ $0 >= 0 }) else {
                throw CheckpointError.badHeader(path: path, reason: "entry '\(name)' has no valid shape")
            }
            guard let offsetValues = fields["data_offsets"] as? [Any], let offsets = Self.integers(offsetValues),
                  offsets.count == 2 else {
                throw CheckpointError.badHeader(path: path, reason: "entry '\(name)' has no valid data_offsets")
            }
            let dataBytes = fileSize - dataOffset
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, begin <= end else {
                throw CheckpointError.offsetsOutOfRange(path: path, tensor: name, begin: begin, end: end, dataBytes: dataBytes)
            }
            let (elements, overflow) = shape.reduce((1, false)) { partial, dimension in
                let (product, o) = partial.0.multipliedReportingOverflow(by: dimension)
                return (product, partial.1 || o)
            }
            let expected = elements.multipliedReportingOverflow(by: dtype.byteSize)
            guard !overflow, !expected.overflow, expected.partialValue == end - begin else {
                throw CheckpointError.byteCountMismatch(
                    path: path, tensor: name, shape: shape, dtype: dtypeName,
                    expectedBytes: overflow ? Int.max : expected.partialValue, actualBytes: end - begin)
            }
            entries[name] = SafetensorsEntry(name: name, dtype: dtype, shape: shape, dataRange: begin..<end)
        }
        // Tensors must not overlap; a header describing more data than the file holds
        // means the file was cut short.
        let sorted = entries.values.sorted { $0.dataRange.lowerBound < $1.dataRange.lowerBound }
        var previousEnd = 0
        for entry in sorted {
            if entry.dataRange.lowerBound < previousEnd && !entry.dataRange.isEmpty {
                throw CheckpointError.offsetsOutOfRange(
                    path: path, tensor: entry.name, begin: entry.dataRange.lowerBound, end: entry.dataRange.upperBound,
                    dataBytes: fileSize - dataOffset)
            }
            previousEnd = max(previousEnd, entry.dataRange.upperBound)
        }
        if dataOffset + previousEnd > fileSize {
            throw CheckpointError.truncatedFile(path: path, expectedBytes: dataOffset + previousEnd, actualBytes: fileSize)
        }
        self.entries = entries
        self.metadata = metadata
    }

    private static func integers(_ values: [Any]) -> [Int]? {
        var result: [Int] = []
        for value in values {
            guard let number = value as? NSNumber else { return nil }
            let double = number.doubleValue
            guard double == double.rounded(), abs(double) < 9.0e15 else { return nil }
            result.append(number.intValue)
        }
        return result
    }
}

/// A whole `.safetensors` file mapped read-only, for files that are not part of a model
/// checkpoint (goldens, calibration data).
public struct SafetensorsFile: Sendable {
    public let header: SafetensorsHeader
    private let region: MappedRegion

    public init(path: String) throws {
        header = try SafetensorsHeader(contentsOf: path)
        region = try MappedRegion(path: path, offset: 0, length: header.fileSize)
    }

    public var names: [String] { header.entries.keys.sorted() }

    public func tensor(_ name: String) throws -> TensorView {
        guard let entry = header.entries[name] else {
            throw CheckpointError.missingTensor(tensor: name, searched: [header.path])
        }
        return TensorView(
            name: name, dtype: entry.dtype, shape: entry.shape,
            pointer: region.pointer(atFileOffset: header.dataOffset + entry.dataRange.lowerBound),
            owner: region, path: header.path)
    }
}
